# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Decoding speed of `model.generate` on the understanding path against a plain transformers decoder of the same
dimensions, measured in the same run: the Mixture-of-Transformers routing must cost nothing when every token goes
through the understanding expert.

    python benchmarks/understanding_decode.py [--config mid|14b] [--device cpu|cuda] [--new-tokens 32] [--repeats 5]
        [--cache-implementation dynamic|static] [--compile] [--qk-norm] [--threads N]

A random UniMedVL (`mid`: 8 MoT layers of width 768, for the CPU; `14b`: the release's sizes, for a GPU, in bf16)
and a `Qwen2ForCausalLM` that shares its understanding-expert weights decode greedily from the same prompt ids: a text
question, and an image + question (the CT example; the baseline reads the same ids as plain tokens). On the text prompt
both must produce the same tokens, which is checked and printed. Each call is timed twice, with `max_new_tokens=N`
and with 1 (the prefill), alternating between all models and modes to share machine noise; the medians give

- decode tokens/s = (N - 1) / (t_N - t_1), the per-token cost once the prompt is in the cache, and
- end-to-end tokens/s = N / t_N,

and `ratio=` UniMedVL / baseline decode tokens/s (1.0 = the MoT costs nothing). `--qk-norm` keeps the release's
per-head q/k RMSNorm, which Qwen2 lacks; the baseline is then a `Qwen3ForCausalLM` (same norms, zero `o_proj` bias).
The dynamic cache is always measured; `--cache-implementation static` adds a preallocated key/value cache and
`--compile` a decoding step compiled by `torch.compile` (through `generate`'s `compile_config`, on a static cache),
each with its `ratio=` over the dynamic cache.
"""

import argparse
import pathlib
import statistics

import torch
from transformers import CompileConfig

from _models import (
    IMAGE_SIDE,
    add_device_arguments,
    build_unimedvl,
    chat_inputs,
    device_and_dtype,
    load_processor,
    plain_lm,
    random_config,
    timed,
)


EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "spaces" / "examples"
QUESTION = "Describe the findings of this examination and the most likely diagnosis, in a few sentences."


def prompt_inputs(processor, image: str | None, device: torch.device) -> dict[str, torch.Tensor]:
    """Chat-template inputs of one user turn (an optional image, then `QUESTION`), on `device`."""
    content = ([{"type": "image", "image": image}] if image else []) + [{"type": "text", "text": QUESTION}]
    return chat_inputs(processor, [[{"role": "user", "content": content}]], device)


# Decoding modes: how `generate` keeps its key/value cache, and whether the decoding step is compiled.
MODES = {"dynamic": "dynamic cache", "static": "static cache", "compile": "static cache + torch.compile"}


def generation_kwargs(new_tokens: int, mode: str, device: torch.device) -> dict:
    """`generate` options of `mode`: greedy, exactly `new_tokens` tokens (random weights may end early otherwise)."""
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    if mode == "compile":
        compile_config = CompileConfig(mode="reduce-overhead" if device.type == "cuda" else "default")
        compile_config._compile_all_devices = device.type != "cuda"  # transformers only compiles on GPUs otherwise
        kwargs.update(cache_implementation="static", compile_config=compile_config)
    elif mode == "static":
        # Without this a static cache is compiled automatically on a GPU; here we measure it on its own.
        kwargs.update(cache_implementation="static", disable_compile=True)
    return kwargs


def new_tokens_of(model, inputs: dict, kwargs: dict) -> list[list[int]]:
    """Greedy new token ids, `(batch, new)` as lists."""
    with torch.inference_mode():
        sequences = model.generate(**inputs, **kwargs)
    return sequences[:, inputs["input_ids"].shape[1] :].tolist()


def measure(models: dict[str, tuple], modes: list[str], args, device) -> dict[tuple[str, str], tuple[float, float]]:
    """Median seconds of `generate` with N new tokens and with 1 (the prefill), `{(name, mode): (t_N, t_1)}`, for
    each `name: (model, inputs)` of `models` and each mode, alternating between all of them."""
    kwargs = {mode: [generation_kwargs(n, mode, device) for n in (args.new_tokens, 1)] for mode in modes}
    runs = [(name, mode) for mode in modes for name in models]
    for name, mode in runs:  # warm-up (and compilation)
        for run_kwargs in (kwargs[mode][1], kwargs[mode][0], kwargs[mode][0]):
            new_tokens_of(*models[name], run_kwargs)
    times = {run: ([], []) for run in runs}
    for _ in range(args.repeats):
        for name, mode in runs:
            for run_kwargs, run_times in zip(kwargs[mode], times[name, mode]):
                run_times.append(timed(lambda: new_tokens_of(*models[name], run_kwargs), device)[0])
    return {run: (statistics.median(full), statistics.median(prefill)) for run, (full, prefill) in times.items()}


def report(medians: dict[tuple[str, str], tuple[float, float]], names: list[str], modes: list[str], new_tokens: int):
    """Prints tokens/s of every (model, mode), `ratio=` UniMedVL / baseline decode tokens/s per mode (`names` is
    [UniMedVL, baseline]), and `ratio=` of each further mode over the dynamic cache for UniMedVL."""
    speeds = {run: (new_tokens - 1) / max(full - prefill, 1e-9) for run, (full, prefill) in medians.items()}
    for mode in modes:
        print(f"  {MODES[mode]}:")
        for name in names:
            full, prefill = medians[name, mode]
            print(f"    {name:>18}: decode {speeds[name, mode]:8.1f} tok/s   end-to-end {new_tokens / full:8.1f} "
                  f"tok/s   prefill {prefill * 1000:8.1f} ms")  # fmt: skip
        print(f"    ratio={speeds[names[0], mode] / speeds[names[1], mode]:.2f} ({names[0]} / {names[1]} decode tok/s)")
    for mode in modes[1:]:
        ratio = speeds[names[0], mode] / speeds[names[0], "dynamic"]
        print(f"  ratio={ratio:.2f} ({names[0]} decode tok/s, {MODES[mode]} / dynamic cache)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="mid", choices=("mid", "14b"))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-implementation", default="dynamic", choices=("dynamic", "static"),
                        help="static: also measure a preallocated key/value cache")
    parser.add_argument("--compile", action="store_true", help="also measure a compiled decoding step (static cache)")
    parser.add_argument("--qk-norm", action="store_true", help="keep the release's q/k norms (baseline: Qwen3)")
    add_device_arguments(parser)
    args = parser.parse_args()
    device, dtype = device_and_dtype(args)
    processor = load_processor(IMAGE_SIDE[args.config])
    model = build_unimedvl(random_config(args.config, processor.tokenizer, args.qk_norm), device, dtype)
    baseline = plain_lm(model)
    modes = ["dynamic"] + ["static"] * (args.cache_implementation == "static") + ["compile"] * args.compile
    print(f"config={args.config} device={device} dtype={dtype} threads={torch.get_num_threads()} "
          f"repeats={args.repeats} modes={modes}")  # fmt: skip

    for case, image in (("text", None), ("image + text", str(EXAMPLES / "CT_small.dcm"))):
        inputs = prompt_inputs(processor, image, device)
        # The baseline reads the same ids (image placeholders included) as plain tokens: same prompt length.
        text_inputs = {key: inputs[key] for key in ("input_ids", "attention_mask")}
        models = {"UniMedVL": (model, inputs), type(baseline).__name__: (baseline, text_inputs)}
        if image is None:
            kwargs = generation_kwargs(args.new_tokens, "dynamic", device)
            same = new_tokens_of(model, inputs, kwargs) == new_tokens_of(baseline, inputs, kwargs)
            print(f"same greedy tokens as {type(baseline).__name__}: {same}")
        print(f"{case} ({inputs['input_ids'].shape[1]} prompt tokens, {args.new_tokens} new):")
        report(measure(models, modes, args, device), list(models), modes, args.new_tokens)


if __name__ == "__main__":
    main()
