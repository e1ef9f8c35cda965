"""`unimedvl generate` and `unimedvl edit` end to end, as subprocesses on the reference checkpoint."""

import os
import subprocess
import sys

import numpy as np
import pydicom.data
import pytest
import torch
from PIL import Image

from unimedvl import UniMedVLPipeline


def run_cli(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "unimedvl.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def ct_dicom():
    return pydicom.data.get_testdata_file("CT_small.dcm")


def test_generate_writes_the_pipeline_image(reference_checkpoint, tmp_path):
    output = tmp_path / "cxr.png"
    result = run_cli(
        "generate", "A chest X-ray.", "-o", str(output), "--model", str(reference_checkpoint),
        "--height", "64", "--width", "48", "--steps", "3", "--seed", "5", "--dtype", "float32", "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr  # the progress bar
    pipe = UniMedVLPipeline.from_pretrained(reference_checkpoint, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("A chest X-ray.", height=64, width=48, num_inference_steps=3, generator=torch.Generator().manual_seed(5))
    got = np.asarray(Image.open(output), dtype=np.int16)
    assert got.shape == (64, 48, 3)
    assert np.abs(got - np.asarray(expected.images[0], dtype=np.int16)).max() <= 1


def test_edit_with_preset_and_dicom(reference_checkpoint, tmp_path, ct_dicom):
    output = tmp_path / "t1.png"
    result = run_cli(
        "edit", "--image", ct_dicom, "--task", "translate", "--field", "target=T1-weighted", "-o", str(output),
        "--model", str(reference_checkpoint), "--steps", "2", "--seed", "0", "--num-images", "2",
        "--window", "soft-tissue",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("t1-1.png", "t1-2.png"):
        assert Image.open(tmp_path / name).size == (128, 128)  # CT_small is 128 x 128: kept by the VAE rules


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "x", "-o", "out.gif2"], "--output"),
        (["generate", "x", "-o", "out.png", "--height", "40"], "--height"),
        (["edit", "--image", "missing.dcm", "--task", "staining", "-o", "out.png"], "missing.dcm"),
        (["edit", "--image", "{dicom}", "--task", "Brighten it.", "--field", "a=b", "-o", "out.png"], "--field"),
        (["edit", "--image", "{dicom}", "--task", "staining", "--field", "level", "-o", "out.png"], "KEY=VALUE"),
    ],
)
def test_bad_input_exits_with_a_message(args, message, ct_dicom, tmp_path):
    args = [arg.replace("{dicom}", ct_dicom) for arg in args]
    args = [str(tmp_path / arg) if arg.startswith("out.") else arg for arg in args]
    result = run_cli(*args, "--model", "unused-model")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
