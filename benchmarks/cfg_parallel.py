"""Speed of batched classifier-free guidance (`cfg_parallel=True`: the active branches as ONE forward per step) against
the release's sequential algorithm (`cfg_parallel=False`: one forward per branch), measured in the same run.

    python benchmarks/cfg_parallel.py [--steps 10] [--size 256] [--repeats 3] [--device cpu|cuda] [--dtype float32]

A mid-size random UniMedVL (no download) generates an image-conditioned edit (three guidance branches, the most
expensive case) and a text-to-image (two branches). Calls alternate between the two modes to share machine noise;
the script prints the median seconds per call and the sequential / batched ratio (> 1 = batched is faster).
"""

import argparse
import functools
import statistics

import torch
from PIL import Image

from _models import mid_size_pipeline, timed
from unimedvl.hub import NANO_MODEL_PATH


def time_call(pipe, cfg_parallel, device, **kwargs) -> tuple[float, torch.Tensor]:
    """Seconds of one generation and its final latents `(1, 16, H/8, W/8)`."""
    generator = torch.Generator().manual_seed(0)
    call = functools.partial(pipe, **kwargs, cfg_parallel=cfg_parallel, output_type="latent", generator=generator)
    seconds, output = timed(call, device)
    return seconds, output.images


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=256, help="output side in pixels (multiple of 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument(
        "--tokenizer", default=str(NANO_MODEL_PATH), help="folder with Qwen2 tokenizer files (default: the nano's)"
    )
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    pipe = mid_size_pipeline(device, dtype, args.tokenizer)
    image = Image.effect_mandelbrot((args.size, args.size), (-2, -1.5, 1, 1.5), 100).convert("RGB")
    cases = {
        "edit (3 branches)": dict(prompt="Translate this CT slice into a T2-weighted MRI.", image=image),
        "text-to-image (2 branches)": dict(prompt="An axial CT slice of the head.", height=args.size, width=args.size),
    }
    print(f"device={device} dtype={args.dtype} steps={args.steps} size={args.size} repeats={args.repeats}")
    for name, kwargs in cases.items():
        kwargs |= dict(num_inference_steps=args.steps, cfg_interval=(0.0, 1.0))
        time_call(pipe, True, device, **kwargs)  # warm-up
        times, latents = {True: [], False: []}, {}
        for _ in range(args.repeats):
            for cfg_parallel in (False, True):
                seconds, latents[cfg_parallel] = time_call(pipe, cfg_parallel, device, **kwargs)
                times[cfg_parallel].append(seconds)
        batched, sequential = statistics.median(times[True]), statistics.median(times[False])
        difference = (latents[True].float() - latents[False].float()).abs().max().item()
        print(
            f"{name}: sequential {sequential:.3f}s  batched {batched:.3f}s  ratio={sequential / batched:.2f} "
            f"max_latent_difference={difference:.2e}"
        )


if __name__ == "__main__":
    main()
