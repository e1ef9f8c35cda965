"""The diffusers side of `unimedvl convert`: one copy of the weights serves transformers and diffusers, and the
converted folder loads as a pipeline with and without this package."""

import json
import subprocess
import sys
import sysconfig

import pytest
import torch
from safetensors.torch import load_file, save_file

from unimedvl import UniMedVLPipeline
from unimedvl.conversion import convert_checkpoint
from unimedvl.pipelines.pipeline_unimedvl import unpack_latents


# Generates the `t2i` golden case through `DiffusionPipeline` and the pipeline code shipped in the checkpoint. Run with
# an interpreter that cannot import `unimedvl`.
REMOTE_PIPELINE_SCRIPT = r"""
import importlib.util, json, sys
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

checkpoint, inputs_path, output = sys.argv[1:4]
torch.set_num_threads(2)
pipe = DiffusionPipeline.from_pretrained(checkpoint, trust_remote_code=True, dtype=torch.float32)
pipe.set_progress_bar_config(disable=True)
spec = json.load(open(inputs_path))
latents = load_file(spec.pop("latents_file"))["latents"]
result = pipe(**spec, latents=latents, output_type="latent").images
save_file({"latent": result.contiguous()}, output)
print(json.dumps({"unimedvl_importable": importlib.util.find_spec("unimedvl") is not None,
                  "pipeline_class": type(pipe).__name__, "model_class": type(pipe.model).__name__}))
"""


@pytest.fixture(scope="module")
def converted(reference_checkpoint, tmp_path_factory):
    return convert_checkpoint(reference_checkpoint, tmp_path_factory.mktemp("convert") / "UniMedVL-hf")


def t2i_call(reference_inputs, reference_tensors):
    spec = reference_inputs["t2i"]
    height, width = spec["image_shapes_hw"]
    kwargs = dict(
        prompt=spec["prompt"], height=height, width=width, num_inference_steps=spec["num_timesteps"] - 1,
        guidance_scale=spec["cfg_text_scale"], image_guidance_scale=spec["cfg_img_scale"],
        cfg_interval=list(spec["cfg_interval"]), timestep_shift=spec["timestep_shift"],
        cfg_renorm_type=spec["cfg_renorm_type"], cfg_renorm_min=spec["cfg_renorm_min"],
    )  # fmt: skip
    latents = unpack_latents(reference_tensors["t2i.initial_noise"][None], (height // 16, width // 16), 2)
    return kwargs, latents


def test_weights_are_stored_once(converted):
    weight_files = sorted(path.relative_to(converted).as_posix() for path in converted.rglob("*.safetensors"))
    assert weight_files == ["model/model.safetensors", "vae/diffusion_pytorch_model.safetensors"]
    index = json.loads((converted / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {"model/model.safetensors"}
    model_index = json.loads((converted / "model_index.json").read_text())
    assert model_index["_class_name"] == ["pipeline_unimedvl", "UniMedVLPipeline"]
    assert model_index["model"] == ["modeling_unimedvl", "UniMedVLForConditionalGeneration"]
    assert (converted / "pipeline_unimedvl.py").is_file() and (converted / "scheduling_unimedvl.py").is_file()
    assert (converted / "model" / "modeling_unimedvl.py").is_file()
    assert (converted / "processor" / "processing_unimedvl.py").is_file()


def test_pipeline_from_converted_checkpoint(converted, reference_inputs, reference_tensors):
    pipe = UniMedVLPipeline.from_pretrained(converted, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    kwargs, latents = t2i_call(reference_inputs, reference_tensors)
    result = pipe(**kwargs, latents=latents, output_type="latent").images
    torch.testing.assert_close(result, reference_tensors["t2i.final_latent_nchw"], rtol=1e-3, atol=1e-3)


def test_pipeline_save_pretrained_round_trip(converted, reference_inputs, reference_tensors, tmp_path):
    pipe = UniMedVLPipeline.from_pretrained(converted, torch_dtype=torch.float32)
    pipe.save_pretrained(tmp_path / "saved")
    reloaded = UniMedVLPipeline.from_pretrained(tmp_path / "saved", torch_dtype=torch.float32)
    for name in ("model", "vae"):
        original, again = getattr(pipe, name).state_dict(), getattr(reloaded, name).state_dict()
        assert original.keys() == again.keys()
        assert all(torch.equal(original[key], again[key]) for key in original)
    assert reloaded.scheduler.config.shift == pipe.scheduler.config.shift


def test_diffusion_pipeline_without_the_package(converted, reference_inputs, reference_tensors, tmp_path):
    """`python -S` skips site processing, so the editable install's import hook is not loaded and `unimedvl` is not
    importable: the checkpoint's own code must carry everything."""
    kwargs, latents = t2i_call(reference_inputs, reference_tensors)
    save_file({"latents": latents.contiguous()}, tmp_path / "latents.safetensors")
    (tmp_path / "inputs.json").write_text(json.dumps(kwargs | {"latents_file": str(tmp_path / "latents.safetensors")}))
    script, output = tmp_path / "remote_pipeline.py", tmp_path / "latent.safetensors"
    script.write_text(REMOTE_PIPELINE_SCRIPT)
    env = dict(
        PYTHONPATH=sysconfig.get_paths()["purelib"], HF_HUB_OFFLINE="1", PATH="/usr/bin:/bin",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
    )  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-S", str(script), str(converted), str(tmp_path / "inputs.json"), str(output)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"unimedvl_importable": False, "pipeline_class": "UniMedVLPipeline",
                      "model_class": "UniMedVLForConditionalGeneration"}  # fmt: skip
    latent = load_file(str(output))["latent"]
    torch.testing.assert_close(latent, reference_tensors["t2i.final_latent_nchw"], rtol=1e-3, atol=1e-3)
