"""Speed of batched classifier-free guidance (`cfg_parallel=True`: the active branches as ONE forward per step) against
the release's sequential algorithm (`cfg_parallel=False`: one forward per branch), measured in the same run.

    python benchmarks/cfg_parallel.py [--steps 10] [--size 256] [--repeats 3] [--device cpu|cuda] [--dtype float32]

A mid-size random UniMedVL (no download) generates an image-conditioned edit (three guidance branches, the most
expensive case) and a text-to-image (two branches). Calls alternate between the two modes to share machine noise;
the script prints the median seconds per call and the sequential / batched ratio (> 1 = batched is faster).
"""

import argparse
import pathlib
import statistics
import time

import torch
from diffusers import AutoencoderKL
from PIL import Image

from unimedvl import UniMedVLConfig, UniMedVLForConditionalGeneration, UniMedVLPipeline, UniMedVLProcessor
from unimedvl.pipelines.scheduling_unimedvl import build_flow_match_scheduler


DEFAULT_TOKENIZER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference_tiny" / "checkpoint"


def mid_size_pipeline(tokenizer_path, device, dtype) -> UniMedVLPipeline:
    """~200M-parameter decoder (8 MoT layers of width 768), a 4-layer ViT and a small random VAE."""
    processor = UniMedVLProcessor.from_pretrained(tokenizer_path)
    tokenizer = processor.tokenizer
    token = tokenizer.convert_tokens_to_ids
    config = UniMedVLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
            num_attention_heads=12, num_key_value_heads=4,
        ),
        vision_config=dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=6),
        max_latent_size=64,
        image_token_id=token("<|image_pad|>"),
        latent_token_id=token("<|vision_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = UniMedVLForConditionalGeneration(config).to(device, dtype).eval()
    vae = AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), layers_per_block=1, latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159,
    ).to(device, dtype)  # fmt: skip
    pipe = UniMedVLPipeline(model=model, vae=vae, scheduler=build_flow_match_scheduler(3.0), processor=processor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_call(pipe, cfg_parallel, device, **kwargs) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    pipe(**kwargs, cfg_parallel=cfg_parallel, output_type="latent", generator=torch.Generator().manual_seed(0))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=256, help="output side in pixels (multiple of 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="folder with Qwen2 tokenizer files")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    pipe = mid_size_pipeline(args.tokenizer, device, dtype)
    image = Image.effect_mandelbrot((args.size, args.size), (-2, -1.5, 1, 1.5), 100).convert("RGB")
    cases = {
        "edit (3 branches)": dict(prompt="Translate this CT slice into a T2-weighted MRI.", image=image),
        "text-to-image (2 branches)": dict(prompt="An axial CT slice of the head.", height=args.size, width=args.size),
    }
    print(f"device={device} dtype={args.dtype} steps={args.steps} size={args.size} repeats={args.repeats}")
    for name, kwargs in cases.items():
        kwargs |= dict(num_inference_steps=args.steps, cfg_interval=(0.0, 1.0))
        time_call(pipe, True, device, **kwargs)  # warm-up
        times = {True: [], False: []}
        for _ in range(args.repeats):
            for cfg_parallel in (False, True):
                times[cfg_parallel].append(time_call(pipe, cfg_parallel, device, **kwargs))
        batched, sequential = statistics.median(times[True]), statistics.median(times[False])
        print(f"{name}: sequential {sequential:.3f}s  batched {batched:.3f}s  ratio {sequential / batched:.2f}x")


if __name__ == "__main__":
    main()
