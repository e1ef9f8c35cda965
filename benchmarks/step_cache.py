# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Speed and fidelity of step caching (`step_cache=StepCacheConfig(...)`) against the uncached default (batched CFG,
the model at every step), measured in the same run.

    python benchmarks/step_cache.py [--steps 30] [--size 256] [--repeats 2] [--device cpu|cuda] [--dtype float32]

Two models generate text-to-image with the release's defaults (guidance 3.0 in (0.4, 1], global renorm, shift 3):

- `nano`: the embedded, trained UniMedVL-Nano (64 x 64), where the PSNR of a cached image against the uncached one
  is meaningful;
- `mid-size`: a random UniMedVL of width 768 (8 MoT layers) at `--size`, for the speed of a heavier model (its images
  are noise, so its PSNR only says how far the cached trajectory drifts).

For each setting and each (prompt, seed) the uncached call and every cached call run back to back, to share machine
noise. Per setting it prints the model forwards per image, the median seconds per image uncached and cached,
`ratio=` (uncached / cached, > 1 = caching is faster) and `psnr_db=`: the PSNR of the decoded image (values in [0, 1])
against the uncached image, mean (and minimum) over the prompts and seeds.
"""

import argparse
import dataclasses
import functools
import statistics

import numpy as np
import torch

from _models import mid_size_pipeline, timed
from unimedvl import StepCacheConfig, UniMedVLPipeline
from unimedvl.hub import NANO_MODEL_PATH


PROMPTS = ("An axial CT slice of the head.", "A chest X-ray.", "An axial T1-weighted MRI of the brain.")
SEEDS = (0, 1)
SETTINGS = (
    StepCacheConfig(interval=2, order=1),
    StepCacheConfig(interval=3, order=1),
    StepCacheConfig(interval=3, order=2),
    StepCacheConfig(interval=4, order=2),
    StepCacheConfig(interval=4, order=2, cooldown_steps=2),
)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of two images with values in [0, 1] (capped at 100 dB for identical images)."""
    mse = float(np.mean((image.astype(np.float64) - reference) ** 2))
    return min(100.0, 10 * np.log10(1.0 / max(mse, 1e-10)))


def count_forwards(pipe: UniMedVLPipeline, step_cache: StepCacheConfig | None, steps: int, size: int) -> int:
    """Model forwards of one text-to-image call (the context prefill included), counted by a forward hook."""
    calls = []
    handle = pipe.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        pipe(
            PROMPTS[0], height=size, width=size, num_inference_steps=steps, step_cache=step_cache, output_type="latent"
        )
    finally:
        handle.remove()
    return len(calls)


def benchmark(name, pipe: UniMedVLPipeline, size: int, steps: int, repeats: int, pairs, device: torch.device) -> None:
    """Time and compare every setting of `SETTINGS` against the uncached pipeline over the (prompt, seed) `pairs`; one
    printed line per setting."""

    def generate(prompt, seed, step_cache):
        """`(seconds, image (size, size, 3) in [0, 1])` of one call."""
        kwargs = dict(height=size, width=size, num_inference_steps=steps, step_cache=step_cache, output_type="np")
        generator = torch.Generator().manual_seed(seed)
        seconds, output = timed(functools.partial(pipe, prompt, generator=generator, **kwargs), device)
        return seconds, output.images[0]

    generate(PROMPTS[0], SEEDS[0], None)  # warm-up
    uncached_times, times = [], {setting: [] for setting in SETTINGS}
    psnrs = {setting: [] for setting in SETTINGS}
    for repeat in range(repeats):
        for prompt, seed in pairs:
            seconds, reference = generate(prompt, seed, None)
            uncached_times.append(seconds)
            for setting in SETTINGS:
                seconds, image = generate(prompt, seed, setting)
                times[setting].append(seconds)
                if repeat == 0:  # the images are deterministic: one PSNR per (prompt, seed)
                    psnrs[setting].append(psnr(image, reference))
    uncached = statistics.median(uncached_times)
    print(f"model={name} size={size} steps={steps} images={len(pairs)} uncached: "
          f"{count_forwards(pipe, None, steps, size)} forwards {uncached:.4f}s/image")  # fmt: skip
    for setting in SETTINGS:
        cached = statistics.median(times[setting])
        label = ",".join(f"{key}={value}" for key, value in dataclasses.asdict(setting).items())
        print(
            f"model={name} setting={label} forwards={count_forwards(pipe, setting, steps, size)} "
            f"uncached_s={uncached:.4f} cached_s={cached:.4f} ratio={uncached / cached:.2f} "
            f"psnr_db={statistics.mean(psnrs[setting]):.1f} (min {min(psnrs[setting]):.1f})"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=256, help="output side of the mid-size model (multiple of 16)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument(
        "--tokenizer", default=str(NANO_MODEL_PATH), help="tokenizer of the mid-size model (default: the nano's)"
    )
    parser.add_argument("--models", nargs="+", default=("nano", "mid-size"), choices=("nano", "mid-size"))
    parser.add_argument(
        "--mid-size-images", type=int, default=2, help="(prompt, seed) pairs of the mid-size model (nano: all 6)"
    )
    parser.add_argument("--threads", type=int, help="CPU threads of torch (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    pairs = [(prompt, seed) for prompt in PROMPTS for seed in SEEDS]
    threads = torch.get_num_threads()
    print(f"device={device} dtype={args.dtype} steps={args.steps} repeats={args.repeats} threads={threads}")
    if "nano" in args.models:
        nano = UniMedVLPipeline.from_pretrained(NANO_MODEL_PATH, dtype=dtype).to(device)
        nano.set_progress_bar_config(disable=True)
        benchmark("nano", nano, 64, args.steps, args.repeats, pairs, device)
    if "mid-size" in args.models:
        mid_size = mid_size_pipeline(device, dtype, args.tokenizer)
        benchmark("mid-size", mid_size, args.size, args.steps, args.repeats, pairs[: args.mid_size_images], device)


if __name__ == "__main__":
    main()
