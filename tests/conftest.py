"""Shared test fixtures: the reference checkpoint (original release layout) and models loaded from it.

The reference fixture lives next to the repository (`../shared/fixtures/reference_tiny`); `UNIMEDVL_REFERENCE_FIXTURE`
points elsewhere. Tests that need it are skipped, with the reason, when it is absent.
"""

import json
import os
import pathlib

import pytest
import torch


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "reference_tiny"


def pytest_configure(config):
    # Hub downloads never happen in tests: everything comes from local folders or the local HF cache.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)  # the reference goldens were produced with 2 threads


@pytest.fixture(scope="session")
def reference_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("UNIMEDVL_REFERENCE_FIXTURE", DEFAULT_FIXTURE))
    if not (path / "checkpoint").is_dir():
        pytest.skip(f"reference fixture not found at {path} (set UNIMEDVL_REFERENCE_FIXTURE)")
    return path


@pytest.fixture(scope="session")
def reference_checkpoint(reference_dir) -> pathlib.Path:
    """The tiny random checkpoint in the ORIGINAL release layout."""
    return reference_dir / "checkpoint"


@pytest.fixture(scope="session")
def reference_inputs(reference_dir) -> dict:
    return json.loads((reference_dir / "inputs.json").read_text())["cases"]


@pytest.fixture(scope="session")
def reference_goldens(reference_dir) -> dict:
    return json.loads((reference_dir / "goldens.json").read_text())["cases"]


@pytest.fixture(scope="session")
def reference_tensors(reference_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(str(reference_dir / "goldens.safetensors"))


@pytest.fixture(scope="session")
def reference_model(reference_checkpoint):
    from unimedvl import UniMedVLForConditionalGeneration

    return UniMedVLForConditionalGeneration.from_pretrained(reference_checkpoint, torch_dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def reference_processor(reference_checkpoint):
    from unimedvl import UniMedVLProcessor

    return UniMedVLProcessor.from_pretrained(reference_checkpoint)
