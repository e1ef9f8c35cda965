"""`unimedvl convert`: the original release layout → our HF layout, loadable with and without this package."""

import json
import subprocess
import sys
import sysconfig

import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file

from unimedvl import UniMedVLForConditionalGeneration, UniMedVLProcessor
from unimedvl.cli import main
from unimedvl.conversion import convert_checkpoint, write_model


ATOL = 1e-4
CODE_FILES = {
    "configuration_unimedvl.py",
    "modeling_unimedvl.py",
    "original_checkpoint.py",
    "processing_unimedvl.py",
    "image_processing_unimedvl.py",
    "medical_io.py",
}

# Loads a converted checkpoint through the Auto classes and the custom code it ships, generates greedily and saves
# the new ids and step logits. Run with an interpreter that cannot import `unimedvl`.
REMOTE_CODE_SCRIPT = r"""
import importlib.util, json, sys
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoModelForImageTextToText, AutoProcessor

checkpoint, image_path, prompt, max_new_tokens, output = sys.argv[1:6]
torch.set_num_threads(2)
model = AutoModelForImageTextToText.from_pretrained(checkpoint, trust_remote_code=True, dtype=torch.float32).eval()
processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
content = [{"type": "image", "image": Image.open(image_path).convert("RGB")}, {"type": "text", "text": prompt}]
inputs = processor.apply_chat_template(
    [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True, return_dict=True,
    return_tensors="pt",
)
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=int(max_new_tokens), do_sample=False, output_logits=True,
                         return_dict_in_generate=True)
new_ids = out.sequences[0, inputs["input_ids"].shape[1]:].contiguous()
save_file({"ids": new_ids, "logits": torch.stack(out.logits)[:, 0].contiguous()}, output)
print(json.dumps({
    "unimedvl_importable": importlib.util.find_spec("unimedvl") is not None,
    "model_class": f"{type(model).__module__}.{type(model).__name__}",
    "processor_class": f"{type(processor).__module__}.{type(processor).__name__}",
}))
"""


@pytest.fixture(scope="module")
def converted(reference_checkpoint, tmp_path_factory):
    return convert_checkpoint(reference_checkpoint, tmp_path_factory.mktemp("convert") / "UniMedVL-hf")


def test_converted_layout(converted, reference_processor):
    files = {path.name for path in converted.iterdir()}
    assert CODE_FILES <= files
    assert {"config.json", "generation_config.json", "processor_config.json", "chat_template.jinja"} <= files
    assert "model.safetensors.index.json" in files  # the shards live in model/ (shared with the diffusers pipeline)
    assert "ae.safetensors" not in files and "ema.safetensors" not in files
    assert not [path for path in converted.parent.iterdir() if path.name.startswith(".")]  # no staging leftovers

    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "unimedvl"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_unimedvl.UniMedVLConfig",
        "AutoModel": "modeling_unimedvl.UniMedVLModel",
        "AutoModelForImageTextToText": "modeling_unimedvl.UniMedVLForConditionalGeneration",
    }
    generation = json.loads((converted / "generation_config.json").read_text())
    tokenizer = reference_processor.tokenizer
    assert generation["eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generation["pad_token_id"] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert generation["max_new_tokens"] == 512 and generation["do_sample"] is False
    processor_config = json.loads((converted / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_unimedvl.UniMedVLProcessor"
    assert processor_config["image_processor"]["auto_map"]["AutoImageProcessor"] == (
        "image_processing_unimedvl.UniMedVLImageProcessor"
    )


def vqa_inputs(processor, reference_inputs, reference_dir):
    spec = reference_inputs["vqa_chat"]
    image = Image.open(reference_dir / "images" / spec["image"]).convert("RGB")
    content = [{"type": "image", "image": image}, {"type": "text", "text": spec["prompt"]}]
    return processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )


def test_converted_checkpoint_equals_the_original(
    converted, reference_model, reference_inputs, reference_goldens, reference_tensors, reference_dir
):
    model = UniMedVLForConditionalGeneration.from_pretrained(converted, dtype=torch.float32).eval()
    processor = UniMedVLProcessor.from_pretrained(converted)
    original_state = reference_model.state_dict()
    assert model.state_dict().keys() == original_state.keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, original_state[key]), key

    want = reference_goldens["vqa_chat"]["generated_ids"][1:]
    inputs = vqa_inputs(processor, reference_inputs, reference_dir)
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=len(want), output_logits=True, return_dict_in_generate=True
        )  # defaults from generation_config.json: greedy
    assert out.sequences[0, inputs["input_ids"].shape[1] :].tolist() == want
    diff = (torch.stack(out.logits)[:, 0] - reference_tensors["vqa_chat.step_logits"][: len(want)]).abs().max()
    print(f"converted checkpoint, vqa_chat: step logits max abs diff {diff.item():.2e}")
    assert diff <= ATOL


def run_remote_code(python, converted, reference_inputs, reference_dir, tmp_path, **env) -> tuple[dict, dict]:
    """Run `REMOTE_CODE_SCRIPT` with the interpreter command `python`; returns its report and saved tensors."""
    spec = reference_inputs["vqa_chat"]
    script, output = tmp_path / "load_remote_code.py", tmp_path / "remote.safetensors"
    script.write_text(REMOTE_CODE_SCRIPT)
    command = [*python, str(script), str(converted), str(reference_dir / "images" / spec["image"]), spec["prompt"]]
    command += ["16", str(output)]
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PATH="/usr/bin:/bin")
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), load_file(str(output))


@pytest.fixture(scope="module")
def expected_vqa(
    reference_model, reference_processor, reference_inputs, reference_goldens, reference_tensors, reference_dir
):
    """What a correct load gives on `vqa_chat`: the golden ids and step logits, and our own model's step logits."""
    want = reference_goldens["vqa_chat"]["generated_ids"][1:]
    inputs = vqa_inputs(reference_processor, reference_inputs, reference_dir)
    with torch.no_grad():
        out = reference_model.generate(
            **inputs, max_new_tokens=len(want), do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    golden = reference_tensors["vqa_chat.step_logits"][: len(want)]
    return {"ids": want, "golden_logits": golden, "logits": torch.stack(out.logits)[:, 0]}


def check_remote_result(report: dict, tensors: dict, expected: dict) -> None:
    assert report["unimedvl_importable"] is False
    assert report["model_class"].startswith("transformers_modules.")
    assert report["model_class"].endswith("modeling_unimedvl.UniMedVLForConditionalGeneration")
    assert report["processor_class"].endswith("processing_unimedvl.UniMedVLProcessor")
    assert tensors["ids"].tolist() == expected["ids"]
    diff = (tensors["logits"] - expected["golden_logits"]).abs().max().item()
    print(f"remote code, vqa_chat: step logits max abs diff {diff:.2e}")
    assert diff <= ATOL
    torch.testing.assert_close(tensors["logits"], expected["logits"], atol=1e-6, rtol=0)


def test_remote_code_loads_without_the_package(converted, expected_vqa, reference_inputs, reference_dir, tmp_path):
    """`python -S` skips site processing, so the editable install's import hook (a .pth file) is not loaded; the
    venv's packages come back through PYTHONPATH, which does not process .pth files."""
    site_packages = sysconfig.get_paths()["purelib"]
    report, tensors = run_remote_code(
        [sys.executable, "-S"], converted, reference_inputs, reference_dir, tmp_path, PYTHONPATH=site_packages
    )
    check_remote_result(report, tensors, expected_vqa)


@pytest.mark.slow
def test_converted_checkpoint_in_a_clean_virtualenv(converted, expected_vqa, reference_inputs, reference_dir, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    requirements = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"transformers=={transformers.__version__}",
        "safetensors",
        "pillow",
        "numpy",
        "jinja2",
    ]
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True, timeout=1800)
    report, tensors = run_remote_code([str(python)], converted, reference_inputs, reference_dir, tmp_path)
    check_remote_result(report, tensors, expected_vqa)


# -- writing safely --------------------------------------------------------------------------------------------------


def fail_after_the_model(context):
    assert (context.staging / "config.json").is_file()  # the model writer did run
    raise RuntimeError("disk full")


def test_failed_conversion_leaves_no_destination(reference_checkpoint, tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        convert_checkpoint(reference_checkpoint, tmp_path / "out", writers=(write_model, fail_after_the_model))
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_destination(reference_checkpoint, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("previous conversion")
    with pytest.raises(RuntimeError, match="disk full"):
        convert_checkpoint(reference_checkpoint, dst, overwrite=True, writers=(write_model, fail_after_the_model))
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
    assert [path.name for path in dst.iterdir()] == ["keep.txt"]


def test_non_empty_destination_needs_overwrite(reference_checkpoint, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "old.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        convert_checkpoint(reference_checkpoint, dst)
    convert_checkpoint(reference_checkpoint, dst, overwrite=True)
    assert (dst / "config.json").is_file() and not (dst / "old.txt").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["out"]  # no backup left behind


def test_sources_that_cannot_be_converted(converted, tmp_path):
    (tmp_path / "readme.md").write_text("hello")
    with pytest.raises(OSError, match="readme.md"):
        convert_checkpoint(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="already in the Hugging Face layout"):
        convert_checkpoint(converted, tmp_path / "out")


def test_convert_command(reference_checkpoint, tmp_path, capsys):
    dst = tmp_path / "UniMedVL-hf"
    assert main(["convert", str(reference_checkpoint), str(dst), "--dtype", "float32", "--max-shard-size", "1MB"]) == 0
    assert f"Wrote {dst}" in capsys.readouterr().out
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded
    assert json.loads((dst / "config.json").read_text())["dtype"] == "float32"

    assert main(["convert", str(reference_checkpoint), str(dst)]) == 2
    assert "error: DST" in capsys.readouterr().err
