# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Model builders and the timer shared by the benchmarks.

Random UniMedVL models (no download) use the tokenizer of the embedded UniMedVL-Nano model:

- `mid`: 8 MoT layers of width 768 and a 4-layer ViT of width 384 (about 200M parameters), for the CPU;
- `14b`: the released dimensions (28 layers of width 3584, the SigLIP so400m tower), for a GPU. It is built directly
  on the target device in the target dtype, so the ~29 GB of bf16 weights never touch CPU memory.

`mid_size_pipeline` wraps the `mid` model in a `UniMedVLPipeline` with a small random VAE (generation benchmarks).
`plain_lm` builds the plain transformers decoder with the understanding expert's dimensions, sharing (not copying)
its weights, as the baseline of "what would decoding cost without the Mixture-of-Transformers".
"""

import time

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from unimedvl import (
    UniMedVLConfig,
    UniMedVLForConditionalGeneration,
    UniMedVLImageProcessor,
    UniMedVLPipeline,
    UniMedVLProcessor,
)
from unimedvl.hub import NANO_MODEL_PATH
from unimedvl.pipelines.scheduling_unimedvl import build_flow_match_scheduler


# Decoder / ViT sizes of the random configs (the 14B sizes are the config defaults, i.e. the release's).
CONFIGS = {
    "mid": dict(
        text_config=dict(
            hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12, num_key_value_heads=4
        ),
        vision_config=dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=6),
    ),
    "14b": dict(text_config={}, vision_config={}),
}

# Longest image side the processor resizes to per config: 224 px (16 × 16 = 256 ViT tokens) keeps CPU runs short;
# `None` keeps the release's understanding resize (up to 980 px).
IMAGE_SIDE = {"mid": 224, "14b": None}


def load_processor(image_side: int | None = None) -> UniMedVLProcessor:
    """The nano model's tokenizer with an image processor that resizes to at most `image_side` pixels per side
    (`None`: the release's understanding resize, the image processor's defaults)."""
    tokenizer = UniMedVLProcessor.from_pretrained(NANO_MODEL_PATH).tokenizer
    if image_side is None:
        image_processor = UniMedVLImageProcessor()
    else:
        size = {"longest_edge": image_side, "shortest_edge": min(image_side, 224)}
        image_processor = UniMedVLImageProcessor(size=size, max_pixels=image_side**2)
    return UniMedVLProcessor(image_processor=image_processor, tokenizer=tokenizer)


def random_config(name: str, tokenizer, qk_norm: bool = True) -> UniMedVLConfig:
    """UniMedVL config `name` ("mid" or "14b") with the special token ids of `tokenizer`; `qk_norm=False` drops the
    per-head q/k norms so that a plain `Qwen2ForCausalLM` has exactly the understanding expert's architecture."""
    token = tokenizer.convert_tokens_to_ids
    sizes = CONFIGS[name]
    ids = dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=token("<|im_start|>"), eos_token_id=token("<|im_end|>")
    )
    text_config = dict(sizes["text_config"], qk_norm=qk_norm, **ids)
    if name != "14b":
        text_config["vocab_size"] = len(tokenizer)  # the 14B keeps the release's 152064 rows of `lm_head`
    return UniMedVLConfig(
        text_config=text_config,
        vision_config=sizes["vision_config"],
        image_token_id=token("<|image_pad|>"),
        latent_token_id=token("<|vision_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
        **ids,
    )


def build_unimedvl(config: UniMedVLConfig, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """Random `UniMedVLForConditionalGeneration` created directly on `device` in `dtype` (no CPU copy on a GPU)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = UniMedVLForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval()


def mid_size_pipeline(device, dtype, tokenizer_path=NANO_MODEL_PATH) -> UniMedVLPipeline:
    """The random `mid` model (about 110M parameters with the nano tokenizer's 1046 tokens) with latents of up to
    1024 px and a small random VAE. The image processor keeps the release's resize rules (a conditioning image of up
    to 1024 px keeps its size), whatever folder the tokenizer comes from."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    processor = UniMedVLProcessor(image_processor=UniMedVLImageProcessor(), tokenizer=tokenizer)
    config = random_config("mid", tokenizer)
    config.max_latent_size = 64
    model = build_unimedvl(config, device, dtype)
    vae = AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), layers_per_block=1, latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159,
    ).to(device, dtype)  # fmt: skip
    pipe = UniMedVLPipeline(model=model, vae=vae, scheduler=build_flow_match_scheduler(3.0), processor=processor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_lm(model: UniMedVLForConditionalGeneration):
    """The plain transformers causal LM with the understanding expert's dimensions, its parameters being the SAME
    tensors as `model`'s understanding expert, embedding and `lm_head` (no extra memory).

    Without q/k norms that is `Qwen2ForCausalLM`. With them (the release), it is `Qwen3ForCausalLM`, whose per-head q/k
    RMSNorm sits at the same place; `attention_bias=True` gives it the q/k/v biases of Qwen2 and a zero `o_proj` bias.
    """
    text = model.config.text_config
    dims = dict(
        vocab_size=text.vocab_size, hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_hidden_layers, num_attention_heads=text.num_attention_heads,
        num_key_value_heads=text.num_key_value_heads, max_position_embeddings=text.max_position_embeddings,
        rms_norm_eps=text.rms_norm_eps, rope_parameters=text.rope_parameters, tie_word_embeddings=False,
        pad_token_id=text.pad_token_id, bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id,
    )  # fmt: skip
    head_dim = text.hidden_size // text.num_attention_heads
    config = Qwen3Config(**dims, attention_bias=True, head_dim=head_dim) if text.qk_norm else Qwen2Config(**dims)
    config._attn_implementation = text._attn_implementation
    model_class = Qwen3ForCausalLM if text.qk_norm else Qwen2ForCausalLM
    with init_empty_weights():  # parameters on `meta`, the rotary buffers real
        baseline = model_class(config)
    device, dtype = model.lm_head.weight.device, model.lm_head.weight.dtype
    state = understanding_state_dict(model)
    for name, parameter in baseline.named_parameters():
        if name not in state:  # Qwen3's `o_proj` biases, which Qwen2 (and the release) lack
            state[name] = torch.zeros(parameter.shape, device=device, dtype=dtype)
    baseline.load_state_dict(state, strict=True, assign=True)
    # Only the rotary buffers move: they stay float32, as in UniMedVL (casting them would change RoPE in bf16).
    return baseline.to(device).eval()


def understanding_state_dict(model: UniMedVLForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The decoder's understanding-expert weights under `Qwen2ForCausalLM` names (`model.layers.0.mlp.up_proj.weight`
    ...), plus `lm_head`; the generation expert (`*_moe_gen`) is left out."""
    state = {
        f"model.{name}": tensor
        for name, tensor in model.model.language_model.state_dict(keep_vars=True).items()
        if "_moe_gen" not in name and not name.startswith("rotary_emb")
    }
    state["lm_head.weight"] = model.lm_head.weight
    return state


def add_device_arguments(parser) -> None:
    """`--device`, `--dtype` and `--threads`, read back by [`device_and_dtype`]."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")


def device_and_dtype(args) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of [`add_device_arguments`]' options; sets torch's CPU threads when `--threads` is given."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    return device, getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))


def chat_inputs(processor: UniMedVLProcessor, conversations: list[list[dict]], device="cpu"):
    """Chat-template inputs of a batch of conversations (left-padded), ready for `generate`, on `device`."""
    inputs = processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    )
    return inputs.to(device)


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device) -> tuple[float, object]:
    """`(seconds, result)` of `function()`, GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result
