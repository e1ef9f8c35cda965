"""The `unimedvl` command line: `chat` end to end through the console script, and its input errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unimedvl import load_image
from unimedvl.cli import main


pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402


CT_DICOM = get_testdata_file("CT_small.dcm")
QUESTION = "Which organ is shown in this image?"


def console_script() -> list[str]:
    """The installed `unimedvl` script, or the module when the package is not installed with its scripts."""
    script = Path(sys.executable).parent / "unimedvl"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "unimedvl.cli"]


def expected_answer(model, processor, images, max_new_tokens, **generate_kwargs) -> str:
    content = [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": QUESTION}]
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        sequences = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **generate_kwargs)
    return processor.decode(sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_chat_streams_the_same_answer_as_generate(reference_checkpoint, reference_model, reference_processor):
    command = [*console_script(), "chat", "--model", str(reference_checkpoint), "--image", CT_DICOM]
    command += ["--max-new-tokens", "12", "--device", "cpu", "--dtype", "float32", QUESTION]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}
    completed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    answer = expected_answer(reference_model, reference_processor, [load_image(CT_DICOM)], 12)
    assert completed.stdout == answer + "\n"


def test_chat_beam_search_prints_the_best_beam(reference_checkpoint, reference_model, reference_processor, capsys):
    args = ["chat", "--model", str(reference_checkpoint), "--image", CT_DICOM, "--image", CT_DICOM]
    assert main([*args, "--num-beams", "2", "--max-new-tokens", "5", QUESTION]) == 0
    image = load_image(CT_DICOM)
    answer = expected_answer(reference_model, reference_processor, [image, image], 5, num_beams=2)
    assert capsys.readouterr().out == answer + "\n"


def chat_error(capsys, *options, model=None) -> str:
    """Run `unimedvl chat` in-process with bad options; return its stderr after checking the exit status."""
    argv = ["chat", "--model", str(model or "unused"), *options, QUESTION]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_unsupported_dtype_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["chat", "--dtype", "int8", QUESTION])
    assert exit_info.value.code == 2
    assert "argument --dtype: invalid choice: 'int8'" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu0"])
def test_unsupported_device(device, capsys):
    assert f"--device: unsupported value '{device}'" in chat_error(capsys, "--device", device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda(capsys):
    assert "CUDA is not available" in chat_error(capsys, "--device", "cuda:0")


def test_missing_image(tmp_path, capsys):
    missing = tmp_path / "nowhere.png"
    err = chat_error(capsys, "--device", "cpu", "--image", str(missing))
    assert "file not found" in err and str(missing) in err


@pytest.mark.parametrize("kind", ["truncated", "not DICOM"])
def test_corrupt_dicom(kind, tmp_path, capsys):
    broken = tmp_path / "broken.dcm"
    data = Path(CT_DICOM).read_bytes()
    broken.write_bytes(data[: len(data) // 2] if kind == "truncated" else b"not a DICOM file" * 16)
    err = chat_error(capsys, "--device", "cpu", "--image", str(broken))
    assert str(broken) in err and "DICOM" in err


def test_slice_index_needs_a_volume(capsys):
    err = chat_error(capsys, "--image", CT_DICOM, "--slice-index", "3")
    assert "--slice-index applies to NIfTI volumes" in err


def test_temperature_needs_sampling(capsys):
    assert "--temperature only applies with --do-sample" in chat_error(capsys, "--temperature", "0.1")


def test_answer_longer_than_the_context(reference_checkpoint, reference_model, capsys):
    limit = reference_model.config.text_config.max_position_embeddings
    err = chat_error(capsys, "--device", "cpu", "--max-new-tokens", str(limit), model=reference_checkpoint)
    assert f"beyond the model's context of {limit}" in err


def test_model_folder_of_neither_layout(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    err = chat_error(capsys, "--device", "cpu", model=tmp_path)
    assert "notes.txt" in err and "llm_config.json" in err


def test_debug_shows_the_exception(capsys):
    with pytest.raises(ValueError, match="--device"):
        main(["--debug", "chat", "--device", "tpu", QUESTION])
    with pytest.raises(ValueError, match="--device"):
        main(["chat", "--device", "tpu", "--debug", QUESTION])


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "chat" in out and "convert" in out
