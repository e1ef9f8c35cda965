# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Quantised loading of UniMedVL through transformers' `quantization_config`: size, load memory, quality and decode
speed of each scheme against bfloat16, measured in the same run.

    python benchmarks/quantization.py [--device cpu|cuda] [--models nano mid] [--schemes ...] [--steps 25]

Two checkpoints are saved in bf16 first: the embedded UniMedVL-Nano model (`nano`, trained, so its answers and images
mean something) and a mid-size random model (`mid`, `_models.mid_size_pipeline`: 8 MoT layers of width 768, about
110M parameters with the nano tokenizer). Each scheme then loads each checkpoint in a fresh process:

- `bf16`: the baseline;
- `torchao-int8wo`: `TorchAoConfig(Int8WeightOnlyConfig())` (CPU and GPU);
- `bnb-8bit` / `bnb-4bit`: `BitsAndBytesConfig` LLM.int8() / NF4 with bf16 compute (by default on a GPU only;
  bitsandbytes' CPU back-end runs 8-bit, its 4-bit CPU kernels need widths divisible by 64, which nano's are not).

It reports the weight bytes held in memory (a torchao tensor counted by its int8 data and scales) and on disk after
`save_pretrained`; the memory growth over the load and the first forward (safetensors files are memory-mapped, so a
bf16 weight becomes resident when first read): on the CPU the peak RSS (`ru_maxrss`, which counts the mapped pages of
the bf16 checkpoint being quantised), the peak anonymous RSS (without mapped file pages) and the anonymous RSS still
live afterwards, on a GPU `torch.cuda.max_memory_allocated()` during the load and the allocated memory after it; the
drift of the logits of a VQA prompt (a real MR scan + "Which imaging modality is this?") from bf16's and whether the
greedy answer tokens are the same; the decode speed of a fixed-length greedy answer against a bf16 copy loaded in the
same process afterwards (the two take turns, so that they share the machine's noise); and (nano) the PSNR of a
generated image against bf16's (same seed). `ratio=` lines give the load peaks over the scheme's own weight bytes, and size and decode
speed against bf16 (speed > 1 = faster than bf16). The modules transformers keeps unquantised by default (`lm_head`)
stay in bf16; embeddings, norms and the position tables are never quantised.
With glibc's default allocator the float32 temporaries of quantisation stay in the heap once freed, so the anonymous
peak of a quantised load overstates what was ever live: `MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/...` returns
them at once (its memory figures are then the live ones; its timings are not comparable).
The parent process imports no torch until every load has been measured, so its own RSS does not mask the children's.
"""

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
VQA_IMAGE = REPO_ROOT / "spaces" / "examples" / "MR_small.dcm"
VQA_QUESTION = "Which imaging modality is this?"
IMAGE_PROMPT = "An axial CT slice of the head"
MODELS = ("nano", "mid")
SCHEMES = ("bf16", "torchao-int8wo", "bnb-8bit", "bnb-4bit")
DEFAULT_SCHEMES = {"cpu": ("bf16", "torchao-int8wo"), "cuda": SCHEMES}


def quantization_config(scheme: str):
    """The transformers `quantization_config` of `scheme` (None for bf16)."""
    import torch

    if scheme == "bf16":
        return None
    if scheme == "torchao-int8wo":
        from torchao.quantization import Int8WeightOnlyConfig
        from transformers import TorchAoConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    import bitsandbytes  # noqa: F401  (imported here, before the memory baseline, rather than inside the load)
    from transformers import BitsAndBytesConfig

    if scheme == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)  # transformers keeps lm_head in bf16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def tensor_bytes(tensor) -> int:
    """Bytes a (possibly quantised) tensor holds: a tensor subclass (torchao) is counted by its inner tensors."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


def build(workdir: Path, models: list[str]) -> None:
    """Save the bf16 checkpoints of `models` (`workdir/nano`, `workdir/mid`)."""
    import torch
    from _models import mid_size_pipeline  # this script's folder is on sys.path when run as a script

    from unimedvl import UniMedVLForConditionalGeneration
    from unimedvl.hub import NANO_MODEL_PATH

    if "nano" in models:
        nano = UniMedVLForConditionalGeneration.from_pretrained(NANO_MODEL_PATH, dtype=torch.bfloat16)
        nano.save_pretrained(workdir / "nano")
    if "mid" in models:
        mid = mid_size_pipeline(torch.device("cpu"), torch.bfloat16).model
        mid.save_pretrained(workdir / "mid")


def vqa_inputs(processor):
    """Chat-template inputs of the VQA prompt: the MR example scan and a modality question."""
    from _models import chat_inputs

    image = processor.image_processor.fetch_images([str(VQA_IMAGE)])[0]
    content = [{"type": "image", "image": image}, {"type": "text", "text": VQA_QUESTION}]
    return chat_inputs(processor, [[{"role": "user", "content": content}]])


def greedy_answer(model, inputs, new_tokens: int, processor) -> list[int]:
    """The greedy answer's token ids (up to `<|im_end|>` or `new_tokens` tokens)."""
    import torch

    with torch.no_grad():
        sequences = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    answer = sequences[0, inputs["input_ids"].shape[1] :].tolist()
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    return answer[: answer.index(end)] if end in answer else answer


def decode_seconds(models: list, inputs, new_tokens: int, repeats: int, device) -> list[float]:
    """Median seconds of greedy decodes of exactly `new_tokens` tokens (EOS suppressed, so every model decodes the same
    length) for each of `models`, after a warm-up; the models take turns (in alternating order) so that they share the
    machine's noise."""
    import torch
    from _models import timed

    def decode(model) -> float:
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        with torch.no_grad():
            return timed(lambda: model.generate(**inputs, **kwargs), device)[0]

    for model in models:
        decode(model)  # warm-up
    seconds = [[] for _ in models]
    for repeat in range(repeats):
        order = range(len(models)) if repeat % 2 == 0 else reversed(range(len(models)))  # neither always goes first
        for index in order:
            seconds[index].append(decode(models[index]))
    return [statistics.median(times) for times in seconds]


def generated_image(model, steps: int):
    """A text-to-image sample of the loaded model with the nano VAE (seed 0): a `(3, H, W)` tensor in [0, 1]."""
    import torch

    from unimedvl import UniMedVLPipeline
    from unimedvl.hub import NANO_MODEL_PATH

    pipe = UniMedVLPipeline.from_pretrained(NANO_MODEL_PATH, model=model, dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    return pipe(IMAGE_PROMPT, num_inference_steps=steps, generator=generator, output_type="pt").images[0].float()


class AnonymousRssPeak:
    """Context manager sampling the anonymous RSS (Linux `/proc/self/status`) in a thread: memory the process
    materialised, without the pages of memory-mapped checkpoint files. `growth` is its peak minus its start."""

    def __enter__(self):
        self.start = self.peak = self.read()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample)
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.thread.join()

    @staticmethod
    def read() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))

    def sample(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.read())
            time.sleep(0.002)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def live_anonymous_rss() -> int:
    """Anonymous RSS after glibc returns the heap it keeps but no longer uses (quantising a weight allocates float32
    temporaries that would otherwise stay counted)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return AnonymousRssPeak.read()


def measure(workdir: Path, model_name: str, scheme: str, device_name: str, args) -> dict:
    """Load one checkpoint with one scheme (in this fresh process) and record its numbers; the logits, answer tokens
    and image go to `workdir/outputs/MODEL-SCHEME.pt` for the comparison against bf16.

    The CPU memory figures cover the load and the first forward: safetensors files are memory-mapped, so a bf16 weight
    only becomes resident when it is first read."""
    import torch

    from unimedvl import UniMedVLForConditionalGeneration, UniMedVLProcessor
    from unimedvl.hub import NANO_MODEL_PATH

    device = torch.device(device_name)
    config = quantization_config(scheme)  # imports the back-end before the baseline
    processor = UniMedVLProcessor.from_pretrained(NANO_MODEL_PATH)
    inputs = vqa_inputs(processor).to(device)
    kwargs = {"dtype": torch.bfloat16, "quantization_config": config, "device_map": device_name}
    gpu = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        gpu_baseline = torch.cuda.memory_allocated(device)
    baseline, live_baseline = peak_rss(), live_anonymous_rss()
    with AnonymousRssPeak() as anonymous, torch.no_grad():
        model = UniMedVLForConditionalGeneration.from_pretrained(workdir / model_name, **kwargs).eval()
        if device.type == "cuda":
            gpu["gpu_peak"] = torch.cuda.max_memory_allocated(device) - gpu_baseline
            gpu["gpu_resident"] = torch.cuda.memory_allocated(device) - gpu_baseline
        logits = model(**inputs).logits[0].float().cpu()
    result = {
        "weight_bytes": sum(tensor_bytes(t) for t in model.state_dict().values()),
        "rss_peak": peak_rss() - baseline,
        "anonymous_peak": anonymous.growth,
        "anonymous_live": live_anonymous_rss() - live_baseline,
        **gpu,
    }
    # The speed against bf16 is timed here, against a bf16 copy loaded after the memory figures were taken.
    bf16_kwargs = {**kwargs, "quantization_config": None}
    reference = UniMedVLForConditionalGeneration.from_pretrained(workdir / model_name, **bf16_kwargs)
    timings = decode_seconds([model, reference.eval()], inputs, args.new_tokens, args.repeats, device)
    result["decode_seconds"], result["bf16_decode_seconds"] = timings
    del reference
    outputs = {"logits": logits, "tokens": torch.tensor(greedy_answer(model, inputs, args.new_tokens, processor))}
    if model_name == "nano":
        outputs["image"] = generated_image(model, args.steps).cpu()

    saved = workdir / "saved" / f"{model_name}-{scheme}"
    model.save_pretrained(saved)
    result["saved_bytes"] = folder_bytes(saved)
    shutil.rmtree(saved)
    (workdir / "outputs").mkdir(exist_ok=True)
    torch.save(outputs, workdir / "outputs" / f"{model_name}-{scheme}.pt")
    return result


def run_child(*arguments: str) -> dict:
    """Run this script in a fresh interpreter (its peak RSS is its own) and return the JSON of its last line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    command = [sys.executable, __file__, *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if completed.returncode:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def compare(workdir: Path, model_name: str, scheme: str) -> dict:
    """Logit drift, greedy-token agreement and image PSNR of `scheme` against bf16."""
    import torch

    reference = torch.load(workdir / "outputs" / f"{model_name}-bf16.pt")
    outputs = torch.load(workdir / "outputs" / f"{model_name}-{scheme}.pt")
    drift = (outputs["logits"] - reference["logits"]).abs()
    quality = {
        "max_drift": drift.max().item(),
        "mean_drift": drift.mean().item(),
        "logit_scale": reference["logits"].abs().max().item(),
        "tokens_match": bool(torch.equal(outputs["tokens"], reference["tokens"])),
    }
    if "image" in reference:
        mse = (outputs["image"] - reference["image"]).pow(2).mean().item()
        quality["psnr"] = float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()
    return quality


def report(model_name: str, rows: dict[str, dict], device: str) -> None:
    """Table and `ratio=` lines of one model; `rows` maps scheme → measured and compared numbers."""
    mib = 2**20
    reference = rows["bf16"]
    memory = ["rss_peak", "anonymous_peak", "anonymous_live"]
    if device == "cuda":
        memory += ["gpu_peak", "gpu_resident"]
    print(f"\nmodel={model_name} device={device}: bf16 weights {reference['weight_bytes'] / mib:.1f} MiB")
    print(
        f"{'scheme':<16}{'weights':>9}{'saved':>9}" + "".join(f"{name:>16}" for name in memory)
        + f"{'max|Δlogit|':>13}{'mean|Δlogit|':>14}{'tokens':>8}{'decode s':>10}{'speed':>7}{'PSNR dB':>9}"
    )
    for scheme, row in rows.items():
        psnr = f"{row['psnr']:>9.1f}" if "psnr" in row else f"{'-':>9}"
        print(
            f"{scheme:<16}{row['weight_bytes'] / mib:>9.1f}{row['saved_bytes'] / mib:>9.1f}"
            + "".join(f"{row[name] / mib:>16.1f}" for name in memory)
            + f"{row['max_drift']:>13.4f}{row['mean_drift']:>14.5f}"
            f"{'same' if row['tokens_match'] else 'differ':>8}{row['decode_seconds']:>10.3f}"
            f"{row['bf16_decode_seconds'] / row['decode_seconds']:>7.2f}{psnr}"
        )
    print(
        f"(MiB; bf16 logits: max |logit| {reference['logit_scale']:.2f}; memory: growth over the load and the first "
        "forward; anonymous: without memory-mapped file pages; live: once the allocator has returned freed heap)"
    )
    where = f"model={model_name} device={device}"
    peaks = ("gpu_peak",) if device == "cuda" else ("rss_peak", "anonymous_peak")
    for scheme, row in rows.items():
        for peak in peaks:
            print(f"ratio={row[peak] / row['weight_bytes']:.2f} {peak}/weight_bytes {where} scheme={scheme}")
        if scheme == "bf16":
            continue
        print(f"ratio={row['weight_bytes'] / reference['weight_bytes']:.2f} weight_bytes/bf16 {where} scheme={scheme}")
        print(f"ratio={row['saved_bytes'] / reference['saved_bytes']:.2f} saved_bytes/bf16 {where} scheme={scheme}")
        speed = row["bf16_decode_seconds"] / row["decode_seconds"]
        print(f"ratio={speed:.2f} decode_speed/bf16 {where} scheme={scheme}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--schemes", nargs="+", choices=SCHEMES, help="default: bf16 + those of the device")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps of the nano image (PSNR)")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy answer length (decode speed)")
    parser.add_argument("--repeats", type=int, default=4, help="timed decodes per model (median)")
    parser.add_argument("--workdir", type=Path, help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the children
    parser.add_argument("--measure-only", nargs=2, metavar=("MODEL", "SCHEME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.workdir, args.models)
        print(json.dumps({"built": str(args.workdir)}))
        return
    if args.measure_only:
        print(json.dumps(measure(args.workdir, *args.measure_only, args.device, args)))
        return

    device_type = args.device.split(":")[0]
    schemes = args.schemes or DEFAULT_SCHEMES[device_type]
    schemes = ["bf16", *[scheme for scheme in schemes if scheme != "bf16"]]  # bf16 is the reference
    options = ["--device", args.device, "--steps", str(args.steps), "--new-tokens", str(args.new_tokens)]
    options += ["--repeats", str(args.repeats)]
    with tempfile.TemporaryDirectory(prefix="unimedvl-quantization-") as scratch:
        workdir = args.workdir or Path(scratch)
        run_child("--build-only", "--workdir", str(workdir), "--models", *args.models)
        options += ["--workdir", str(workdir)]
        measured = {model: {} for model in args.models}
        for model in args.models:
            for scheme in schemes:
                measured[model][scheme] = run_child("--measure-only", model, scheme, *options)
        for model, rows in measured.items():  # torch is imported from here on
            for scheme, row in rows.items():
                row.update(compare(workdir, model, scheme))
            report(model, rows, device_type)


if __name__ == "__main__":
    main()
