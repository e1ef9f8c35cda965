"""The demo app's pieces that need no server: wrappers, conversation handling, options, Space files, deployment."""

import re
import sys
import types
from pathlib import Path

import gradio as gr
import pytest
from huggingface_hub import SpaceCard, SpaceHardware
from packaging.requirements import Requirement

import unimedvl.spaces
from unimedvl.spaces import app as demo_app
from unimedvl.spaces.demo_model import build_messages, history_to_turns, report_prompt
from unimedvl.spaces.demo_options import DemoSettings, add_demo_arguments, settings_from_args
from unimedvl.spaces.deploy import build_space_folder, space_sources


SPACE_DIR = Path(unimedvl.spaces.__file__).resolve().parent
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_spaces_package_init_is_empty():
    assert (SPACE_DIR / "__init__.py").read_text().strip() == ""


def test_gpu_decorator_is_a_no_op_without_zerogpu(monkeypatch):
    monkeypatch.setattr(demo_app, "zero_gpu", None)
    fn = lambda: 1  # noqa: E731
    assert demo_app.gpu(60)(fn) is fn
    monkeypatch.setattr(demo_app, "zero_gpu", types.SimpleNamespace())  # some other `spaces` module: no GPU
    assert demo_app.gpu(60)(fn) is fn


def test_gpu_decorator_uses_zerogpu_when_present(monkeypatch):
    calls = []

    def GPU(duration):  # noqa: N802 (the ZeroGPU API's name)
        def decorate(fn):
            calls.append((fn.__name__, duration))
            return fn

        return decorate

    monkeypatch.setattr(demo_app, "zero_gpu", types.SimpleNamespace(GPU=GPU))

    def answer():
        return 1

    demo_app.gpu(120)(answer)
    assert calls == [("answer", 120)]


def test_user_errors_become_friendly_gradio_errors():
    def bad_input():
        raise ValueError("Please upload an image first.")

    def crash():
        raise RuntimeError("CUDA kernel failed at /secret/path.py:12")

    def stream():
        yield "partial"
        raise ValueError("The conversation no longer fits.")

    with pytest.raises(gr.Error, match="Please upload an image first."):
        demo_app.user_errors(bad_input)()
    with pytest.raises(gr.Error) as caught:
        demo_app.user_errors(crash)()
    assert "secret" not in caught.value.message and "Something went wrong" in caught.value.message
    wrapped = demo_app.user_errors(stream)
    assert next(wrapped()) == "partial"
    with pytest.raises(gr.Error, match="no longer fits"):
        list(wrapped())


def test_streaming_handlers_stay_generators_under_a_decorator():
    import functools
    import inspect

    def stream():
        yield "a"
        raise ValueError("bad input")

    @functools.wraps(stream)
    def decorated(*args, **kwargs):  # like spaces.GPU: a plain function returning the generator
        return stream(*args, **kwargs)

    wrapped = demo_app.user_errors(decorated)
    assert inspect.isgeneratorfunction(wrapped)
    with pytest.raises(gr.Error, match="bad input"):
        list(wrapped())


def test_wrapped_handlers_keep_their_signature_for_gradio():
    def generate(prompt, progress=gr.Progress()):  # noqa: B008
        return prompt

    import inspect

    assert list(inspect.signature(demo_app.user_errors(generate)).parameters) == ["prompt", "progress"]


def test_history_to_turns_reads_gradio_messages():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Which organ?"}], "metadata": None},
        {"role": "assistant", "content": [{"type": "text", "text": "The liver."}]},
        {"role": "user", "content": "Any lesion?"},
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "unanswered"},
    ]
    assert history_to_turns(history) == [("Which organ?", "The liver."), ("Any lesion?", "No.")]
    assert history_to_turns(None) == []


def test_build_messages_puts_the_image_in_the_first_turn_only():
    image = object()
    messages = build_messages(image, [("Which organ?", "The liver.")], "Any lesion?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0] == {"type": "image", "image": image}
    assert all(item["type"] == "text" for item in messages[2]["content"])
    assert build_messages(None, [], "Hello")[0]["content"] == [{"type": "text", "text": "Hello"}]


def test_report_prompt():
    assert "radiology report" in report_prompt("CT")
    assert "pathology report" in report_prompt("histopathology")
    assert report_prompt("chest X-ray", " cough ").endswith("Clinical indication: cough")


def test_demo_options(monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--model", "m", "--size", "64", "--steps", "2"]))
    assert settings == DemoSettings(model="m", size=64, steps=2)
    args = parser.parse_args([])
    assert args.host is None and args.port is None  # Gradio's own defaults ($GRADIO_SERVER_NAME on Spaces)
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "63"])


def test_model_resolution_order(monkeypatch):
    from unimedvl.hub import DEFAULT_DEMO_MODEL_ID, MODEL_ENV_VAR, resolve_model

    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert resolve_model() == DEFAULT_DEMO_MODEL_ID
    monkeypatch.setenv(MODEL_ENV_VAR, "env/model")
    assert resolve_model() == "env/model"
    assert resolve_model("flag/model") == "flag/model"


def test_demo_command_is_registered():
    from unimedvl.cli import build_parser

    args = build_parser().parse_args(["demo", "--model", "x", "--size", "64"])
    assert args.command == "demo" and args.model == "x" and args.size == 64


def test_space_readme_front_matter():
    card = SpaceCard.load(SPACE_DIR / "README.md")
    data = card.data
    assert data.sdk == "gradio"
    assert (SPACE_DIR / data.app_file).is_file()
    assert data.sdk_version.split(".")[0] == gr.__version__.split(".")[0]
    assert data.license == "apache-2.0"
    assert data.models and all("/" in model for model in data.models)
    assert data.suggested_hardware in {hardware.value for hardware in SpaceHardware}
    assert "Research use only" in card.text


def test_space_requirements_match_the_package_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    declared = {
        Requirement(line).name.lower(): str(Requirement(line).specifier)
        for line in pyproject["project"]["dependencies"]
    }
    lines = [line.strip() for line in (SPACE_DIR / "requirements.txt").read_text().splitlines()]
    listed = {
        Requirement(line).name.lower(): str(Requirement(line).specifier)
        for line in lines
        if line and not line.startswith("#")
    }
    assert listed == declared
    assert "gradio" not in listed  # the Space installs Gradio from sdk_version


def test_examples_are_small_and_documented():
    readme = (SPACE_DIR / "examples" / "README.md").read_text()
    files = [path for path in (SPACE_DIR / "examples").iterdir() if path.name != "README.md"]
    assert len(files) >= 4
    for path in files:
        assert f"`{path.name}`" in readme, f"{path.name} has no provenance entry"
        assert path.stat().st_size < 150_000  # the largest, head_ct.dcm, is a 512 x 512 JPEG 2000 slice (139 KB)


def test_space_folder_carries_the_package(tmp_path):
    files = space_sources("me/model")
    for name in (
        "app.py",
        "README.md",
        "requirements.txt",
        "examples/CT_small.dcm",
        "unimedvl/__init__.py",
        "unimedvl/spaces/app.py",
        "unimedvl/spaces/__init__.py",
        "unimedvl/modeling/medical_io.py",
        "unimedvl/pipelines/pipeline_unimedvl.py",
    ):
        assert name in files, name
    assert not any(name.startswith(("unimedvl/train/", "unimedvl/evaluation/")) for name in files)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in files)
    assert not any(name == "spaces" or name.startswith("spaces/") for name in files)  # never a top-level `spaces`
    folder = build_space_folder(tmp_path / "space", "me/model")
    assert SpaceCard.load(folder / "README.md").data.models == ["me/model"]
    assert (folder / "app.py").read_text() == (SPACE_DIR / "app.py").read_text()
    with pytest.raises(FileExistsError):
        build_space_folder(folder)


def test_app_file_has_no_path_hacks():
    source = (SPACE_DIR / "app.py").read_text()
    assert "sys.path" not in source
    # No string literal holding an absolute or home-relative path, and no test fixture.
    assert not re.search(r"[\"'](/[A-Za-z]|~/|[A-Za-z]:\\)", source)
    assert "reference_tiny" not in source


def test_our_folder_is_never_the_top_level_spaces_package(tmp_path):
    # ZeroGPU's package is `spaces`; the installed project must not provide (or shadow) that name.
    import subprocess

    found = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; s = u.find_spec('spaces'); print(s.origin if s else None)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == "None" or Path(found).resolve().parent != SPACE_DIR


def test_the_app_builds_for_the_embedded_nano_model():
    """`unimedvl demo` without --model serves UniMedVL-Nano, whose largest image side (64 px) is the usual minimum."""
    from unimedvl.hub import NANO_MODEL_PATH

    app = demo_app.build_app(NANO_MODEL_PATH, DemoSettings())
    sizes = [block for block in app.blocks.values() if isinstance(block, gr.Slider) and block.label in ("Height", "Width")]
    assert len(sizes) == 4  # text-to-image and image-to-image
    for slider in sizes:
        assert slider.minimum < slider.maximum == 64 and slider.value == 64 and slider.step == 16
