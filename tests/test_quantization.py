"""Quantised loading through transformers' `quantization_config` (torchao int8 weight-only, on the CPU) and model CPU
offload of the pipeline, on the embedded UniMedVL-Nano model.

Thresholds were measured on the nano model (bf16 logits up to |21.5|): int8 weight-only moves the VQA logits by at
most 0.19 (mean 0.037) and gives a 4-step image at 41.7 dB PSNR from bf16's (bf16 vs float32: 46.6 dB); the limits
below leave a margin of about 2.5x in the drift and 4.7x in the squared error.
"""

import os

import pytest
import torch

from unimedvl import UniMedVLForConditionalGeneration, UniMedVLPipeline, UniMedVLProcessor
from unimedvl.hub import NANO_MODEL_PATH


MR_SCAN = os.path.join(os.path.dirname(__file__), os.pardir, "spaces", "examples", "MR_small.dcm")
MAX_LOGIT_DRIFT = 0.5
MEAN_LOGIT_DRIFT = 0.1
MIN_PSNR_DB = 35.0
MAX_SIZE_RATIO = 0.65  # int8 file / bf16 file (measured 0.58: embeddings, norms and `lm_head` stay bf16)


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of images in [0, 1], in dB."""
    mse = (image.float() - reference.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def generate(pipe: UniMedVLPipeline, prompt: str = "An axial CT slice of the head", **kwargs) -> torch.Tensor:
    """A 4-step 64 x 64 image (seed 0) as a `(1, 3, 64, 64)` tensor in [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    return pipe(prompt, num_inference_steps=4, output_type="pt", generator=generator, **kwargs).images


def nano_pipeline(model=None, dtype=torch.bfloat16) -> UniMedVLPipeline:
    pipe = UniMedVLPipeline.from_pretrained(NANO_MODEL_PATH, dtype=dtype, **({"model": model} if model else {}))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def vqa_inputs():
    processor = UniMedVLProcessor.from_pretrained(NANO_MODEL_PATH)
    image = processor.image_processor.fetch_images([MR_SCAN])[0]
    content = [{"type": "image", "image": image}, {"type": "text", "text": "Which imaging modality is this?"}]
    return processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory):
    """The nano model saved in bf16: the checkpoint every scheme loads."""
    path = tmp_path_factory.mktemp("nano-bf16")
    UniMedVLForConditionalGeneration.from_pretrained(NANO_MODEL_PATH, dtype=torch.bfloat16).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bf16_model(bf16_checkpoint):
    return UniMedVLForConditionalGeneration.from_pretrained(bf16_checkpoint, dtype=torch.bfloat16).eval()


@pytest.fixture(scope="module")
def int8_model(bf16_checkpoint):
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    config = TorchAoConfig(Int8WeightOnlyConfig())
    model = UniMedVLForConditionalGeneration.from_pretrained(
        bf16_checkpoint, dtype=torch.bfloat16, quantization_config=config
    )
    return model.eval()


def is_quantized(weight: torch.Tensor) -> bool:
    """A torchao weight is a tensor subclass whose data lives in inner tensors (int8 values and scales)."""
    return hasattr(weight, "__tensor_flatten__")


def test_int8_weight_only_quantizes_the_linear_layers_and_keeps_lm_head(int8_model):
    layer = int8_model.model.language_model.layers[0]
    attention, mlp, mlp_gen = layer.self_attn, layer.mlp, layer.mlp_moe_gen
    for linear in (attention.q_proj, attention.k_proj_moe_gen, mlp.up_proj, mlp_gen.down_proj):
        assert is_quantized(linear.weight)
    assert is_quantized(int8_model.model.llm2vae.weight)
    assert not is_quantized(int8_model.lm_head.weight)  # transformers keeps the output head unquantised
    assert not is_quantized(int8_model.get_input_embeddings().weight)
    assert int8_model.config.quantization_config.quant_method == "torchao"


def test_int8_logits_stay_close_to_bf16_and_the_answer_is_the_same(int8_model, bf16_model, vqa_inputs):
    with torch.no_grad():
        reference = bf16_model(**vqa_inputs).logits.float()
        logits = int8_model(**vqa_inputs).logits.float()
    drift = (logits - reference).abs()
    assert drift.max() <= MAX_LOGIT_DRIFT
    assert drift.mean() <= MEAN_LOGIT_DRIFT
    answers = [
        model.generate(**vqa_inputs, max_new_tokens=4, do_sample=False)[0, vqa_inputs["input_ids"].shape[1] :]
        for model in (bf16_model, int8_model)
    ]
    assert torch.equal(*answers)


def test_int8_checkpoint_is_smaller_and_reloads_without_a_quantization_config(
    int8_model, bf16_checkpoint, vqa_inputs, tmp_path
):
    int8_model.save_pretrained(tmp_path)
    saved = (tmp_path / "model.safetensors").stat().st_size
    assert saved <= MAX_SIZE_RATIO * (bf16_checkpoint / "model.safetensors").stat().st_size

    reloaded = UniMedVLForConditionalGeneration.from_pretrained(tmp_path).eval()  # the config names the quantisation
    assert is_quantized(reloaded.model.language_model.layers[0].mlp.up_proj.weight)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**vqa_inputs).logits, int8_model(**vqa_inputs).logits, rtol=0, atol=0)


def test_pipeline_generates_with_the_int8_model(int8_model, bf16_model):
    reference = generate(nano_pipeline(bf16_model))
    image = generate(nano_pipeline(int8_model))
    assert image.shape == reference.shape == (1, 3, 64, 64)
    assert psnr(image, reference) >= MIN_PSNR_DB


def test_the_pipeline_loads_its_model_quantised(bf16_model):
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    pipe = UniMedVLPipeline.from_pretrained(
        NANO_MODEL_PATH, dtype=torch.bfloat16, quantization_config=TorchAoConfig(Int8WeightOnlyConfig())
    )
    pipe.set_progress_bar_config(disable=True)
    assert is_quantized(pipe.model.model.language_model.layers[0].mlp.up_proj.weight)
    assert pipe.vae.dtype == torch.bfloat16 and not is_quantized(pipe.vae.decoder.conv_in.weight)
    assert psnr(generate(pipe), generate(nano_pipeline(bf16_model))) >= MIN_PSNR_DB


def test_model_cpu_offload_hooks_run_the_same_generation_on_the_cpu():
    """What offloading changes, checked without an accelerator: the components get accelerate hooks that move them to
    the execution device on their forward (the VAE's `encode` / `decode` included), and the images stay the same."""
    pipe = nano_pipeline(dtype=torch.float32)
    image = pipe.processor.image_processor.fetch_images([MR_SCAN])[0]
    expected = [generate(pipe), generate(pipe, prompt="Translate this MRI into a CT.", image=image)]

    pipe.enable_model_cpu_offload(device="cpu")
    assert hasattr(pipe.model, "_hf_hook") and hasattr(pipe.vae, "_hf_hook")
    assert pipe._execution_device.type == "cpu"
    torch.testing.assert_close(generate(pipe), expected[0], rtol=0, atol=0)
    torch.testing.assert_close(
        generate(pipe, prompt="Translate this MRI into a CT.", image=image), expected[1], rtol=0, atol=0
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="requires CUDA")
def test_model_cpu_offload_on_cuda_equals_the_resident_pipeline():
    pipe = nano_pipeline().to("cuda")
    image = pipe.processor.image_processor.fetch_images([MR_SCAN])[0]
    calls = [{}, {"prompt": "Translate this MRI into a CT.", "image": image}, {"think": True, "max_text_tokens": 8}]
    expected = [generate(pipe, **kwargs) for kwargs in calls]

    offloaded = nano_pipeline()
    offloaded.enable_model_cpu_offload()
    assert offloaded._execution_device.type == "cuda"
    for kwargs, reference in zip(calls, expected):
        images = generate(offloaded, **kwargs)
        torch.testing.assert_close(images.cpu(), reference.cpu(), rtol=0, atol=1e-5)
        assert next(offloaded.model.parameters()).device.type == "cpu"  # moved back after the call
