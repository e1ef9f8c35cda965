# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Peak memory of loading UniMedVL in bfloat16: is a second copy of the weights ever materialised?

    python benchmarks/load_memory.py [--layers 12] [--workdir DIR] [--device cpu|cuda]

Builds a mid-size random UniMedVL (about 0.7 GB of bf16 weights with the defaults) and writes it three times:

- `original-bf16`: the ORIGINAL release layout (`llm_config.json`, `vit_config.json` with one ViT layer more than
  stored, `ema.safetensors` with the release's key names, the Qwen2 tokenizer files of the reference fixture);
- `original-fp32`: the same with float32 weights (the 14B release may ship fp32; loading in bf16 then casts);
- `hf`: our HF layout, written by `unimedvl.conversion.convert_checkpoint` from `original-bf16`.

Then, each in a fresh process, it records the peak RSS (`ru_maxrss`) of the baseline `import torch, transformers,
unimedvl`, and of the same plus `UniMedVLForConditionalGeneration.from_pretrained(path, dtype=torch.bfloat16)` with and
without `device_map="auto"`: right after loading, and again after reading every weight once (safetensors files are
memory-mapped, so untouched weights may not be resident yet). A forward pass then checks the loaded model runs.

It prints `(peak - baseline) / bf16 weight bytes`: about 1.0 means the weights exist once, 2.0 a full second copy; and
the same ratio for the peak of the anonymous RSS (sampled from /proc, Linux), which leaves out the page cache of the
memory-mapped checkpoint (reclaimable, and only resident while a file is being read). The target is <= 1.2.
With `--device cuda` the model loads with `device_map="cuda"` (and `"auto"`) and the ratio is the GPU's
`torch.cuda.max_memory_allocated()` during loading over the bf16 weight bytes; the host RSS figures are kept.
Every ratio is also printed as a `ratio=...` line.
Linux keeps `ru_maxrss` across `fork`/`exec`, so the checkpoints are built in a child process and this parent stays
small (it imports no torch). The tokenizer comes from the reference fixture (`UNIMEDVL_REFERENCE_FIXTURE`, default
`../shared/fixtures/reference_tiny` next to the repository).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "reference_tiny"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")
LAYOUTS = ("original-bf16", "original-fp32", "hf")

# Runs in a fresh interpreter: argv = [path or "", device_map or ""]; prints one JSON line of byte counts. A thread
# samples the anonymous part of the RSS from /proc (Linux), which excludes memory-mapped checkpoint pages. On a GPU
# (`device_map` naming "cuda" or "auto" with CUDA present) it also records the peak allocated GPU memory of the load.
MEASURE = """
import json, resource, sys, threading, time
import torch, transformers, unimedvl

def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

def anonymous_rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))

path, device_map = sys.argv[1:3]
result = {"baseline": peak_rss(), "anon_baseline": anonymous_rss(), "anon_peak": 0}
on_gpu = torch.cuda.is_available() and device_map != ""
done = threading.Event()

def sample():
    while not done.is_set():
        result["anon_peak"] = max(result["anon_peak"], anonymous_rss())
        time.sleep(0.002)

sampler = threading.Thread(target=sample)
sampler.start()
if path:
    kwargs = {"dtype": torch.bfloat16, **({"device_map": device_map} if device_map else {})}
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    model = unimedvl.UniMedVLForConditionalGeneration.from_pretrained(path, **kwargs)
    result["loaded"] = peak_rss()
    if on_gpu:
        result["gpu_peak"] = torch.cuda.max_memory_allocated()  # before any activation is allocated
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.sum()  # pages every weight in
        result["touched"] = peak_rss()
        result["dtypes"] = sorted({str(p.dtype) for p in model.parameters()})
        result["devices"] = sorted({str(p.device) for p in model.parameters()})
        input_ids = torch.tensor([[model.config.bos_token_id, 10, 11]], device=model.device)
        logits = model(input_ids=input_ids).logits
    result["forward_ok"] = bool(torch.isfinite(logits).all())
done.set()
sampler.join()
print(json.dumps(result))
"""


def midsize_config(token_ids: dict[str, int], layers: int):
    """A UniMedVL of the release's shape, scaled down (hidden 1024, `layers` MoT layers, 6-layer ViT)."""
    from unimedvl import UniMedVLConfig

    text_config = dict(
        vocab_size=32768,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=4,
        **{key: token_ids[key] for key in ("pad_token_id", "bos_token_id", "eos_token_id")},
    )
    vision_config = dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6)
    return UniMedVLConfig(text_config=text_config, vision_config=vision_config, **token_ids)


def to_original_key(key: str) -> str:
    """Our parameter name → the release's (`ORIGINAL_KEY_MAPPING` inverted; its patterns are plain prefixes)."""
    from unimedvl.modeling.original_checkpoint import ORIGINAL_KEY_MAPPING

    for pattern, target in ORIGINAL_KEY_MAPPING.items():
        if key.startswith(target):
            return pattern.lstrip("^").replace("\\", "") + key[len(target) :]
    raise KeyError(f"no release name for {key}")


def random_state_dict(config) -> dict:
    """Random bf16 tensors with the names and shapes of a model of `config` (built on the meta device)."""
    import torch

    from unimedvl import UniMedVLForConditionalGeneration

    with torch.device("meta"):
        model = UniMedVLForConditionalGeneration(config)
    generator = torch.Generator().manual_seed(0)
    return {
        key: (torch.randn(tensor.shape, generator=generator) * 0.02).to(torch.bfloat16)
        for key, tensor in model.state_dict().items()
    }


def write_original_layout(folder: Path, config, state_dict: dict, tokenizer_dir: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    text, vision = config.text_config, config.vision_config
    llm_config = {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_act": text.hidden_act,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "max_position_embeddings": text.max_position_embeddings,
        "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": text.rope_parameters["rope_theta"],
        "vocab_size": text.vocab_size,
    }
    vit_config = {
        "model_type": "siglip_vision_model",
        "hidden_act": vision.hidden_act,
        "hidden_size": vision.hidden_size,
        "intermediate_size": vision.intermediate_size,
        "num_hidden_layers": vision.num_hidden_layers + 1,  # the release's file says one more than it runs
        "num_attention_heads": vision.num_attention_heads,
        "image_size": vision.image_size,
        "patch_size": vision.patch_size,
        "layer_norm_eps": vision.layer_norm_eps,
    }
    (folder / "llm_config.json").write_text(json.dumps(llm_config, indent=2))
    (folder / "vit_config.json").write_text(json.dumps(vit_config, indent=2))
    save_file({to_original_key(key): tensor for key, tensor in state_dict.items()}, str(folder / "ema.safetensors"))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, folder / name)


def build(workdir: Path, layers: int) -> int:
    """Write the three checkpoints under `workdir`; returns the bf16 weight bytes."""
    import torch

    from unimedvl.conversion import convert_checkpoint, write_model, write_processor
    from unimedvl.modeling.original_checkpoint import special_token_ids

    tokenizer_dir = Path(os.environ.get("UNIMEDVL_REFERENCE_FIXTURE", DEFAULT_FIXTURE)) / "checkpoint"
    config = midsize_config(special_token_ids(tokenizer_dir), layers)
    state_dict = random_state_dict(config)
    weight_bytes = sum(tensor.numel() * tensor.element_size() for tensor in state_dict.values())
    write_original_layout(workdir / "original-bf16", config, state_dict, tokenizer_dir)
    state_dict = {key: tensor.to(torch.float32) for key, tensor in state_dict.items()}
    write_original_layout(workdir / "original-fp32", config, state_dict, tokenizer_dir)
    del state_dict
    # The transformers side only: the release layout written above has no VAE (`ae.safetensors`) to convert.
    writers = (write_model, write_processor)
    convert_checkpoint(workdir / "original-bf16", workdir / "hf", max_shard_size="200MB", writers=writers)
    return weight_bytes


def measure(path: Path | None = None, device_map: str = "") -> dict:
    """Peak RSS figures of one fresh interpreter that loads `path` (or only imports, for `path=None`)."""
    command = [sys.executable, "-c", MEASURE, str(path or ""), device_map]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if completed.returncode:
        raise RuntimeError(f"loading {path} (device_map={device_map!r}) failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def ratio_lines(result: dict, baseline: int, weight_bytes: int, layout: str, device_map: str) -> list[str]:
    """The `ratio=` lines of one load: host RSS after loading / after reading every weight / anonymous RSS, and the
    GPU's peak allocated memory when the load went to a GPU; each over the bf16 weight bytes."""
    where = f"layout={layout} device_map={device_map or '-'}"
    ratios = {
        "peak_rss_after_load": (result["loaded"] - baseline) / weight_bytes,
        "peak_rss_all_read": (result["touched"] - baseline) / weight_bytes,
        "peak_anonymous_rss": (result["anon_peak"] - result["anon_baseline"]) / weight_bytes,
    }
    if "gpu_peak" in result:
        ratios["gpu_peak_allocated"] = result["gpu_peak"] / weight_bytes
    return [f"ratio={value:.2f} {name}/weight_bytes {where}" for name, value in ratios.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12, help="MoT decoder layers (default: 12, ~0.7 GB in bf16)")
    parser.add_argument("--workdir", type=Path, help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the model is loaded")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the child that writes them
    args = parser.parse_args()
    if args.build_only:
        print(json.dumps({"weight_bytes": build(args.workdir, args.layers)}))
        return

    with tempfile.TemporaryDirectory(prefix="unimedvl-load-memory-") as scratch:
        workdir = args.workdir or Path(scratch)
        command = [sys.executable, __file__, "--build-only", "--workdir", str(workdir), "--layers", str(args.layers)]
        built = subprocess.run(command, capture_output=True, text=True, check=True)
        weight_bytes = json.loads(built.stdout.strip().splitlines()[-1])["weight_bytes"]
        baseline = measure()["baseline"]

        mib = 2**20
        print(f"bf16 weights: {weight_bytes / mib:.1f} MiB ({args.layers} MoT layers), device={args.device}")
        print(f"baseline (import torch, transformers, unimedvl): peak RSS {baseline / mib:.1f} MiB")
        print("ratio = (peak RSS - baseline) / bf16 weight bytes; 'anonymous' leaves out memory-mapped file pages")
        header = f"{'layout':<15}{'device_map':<12}{'after load':>12}{'ratio':>7}{'all read':>10}{'ratio':>7}"
        gpu_header = f"{'GPU peak':>10}{'ratio':>7}" if args.device == "cuda" else ""
        print(f"{header}{'anonymous':>11}{'ratio':>7}{gpu_header}  forward")
        lines = []
        # On a GPU, "cuda" puts every weight there directly; "auto" lets accelerate place them (all on the GPU here).
        device_maps = ("cuda", "auto") if args.device == "cuda" else ("", "auto")
        for layout in LAYOUTS:
            for device_map in device_maps:
                result = measure(workdir / layout, device_map)
                row = [(result[key] - base) for key, base in (("loaded", baseline), ("touched", baseline))]
                row.append(result["anon_peak"] - result["anon_baseline"])
                gpu = result.get("gpu_peak") if args.device == "cuda" else None
                print(
                    f"{layout:<15}{device_map or '-':<12}"
                    f"{result['loaded'] / mib:>12.1f}{row[0] / weight_bytes:>7.2f}"
                    f"{result['touched'] / mib:>10.1f}{row[1] / weight_bytes:>7.2f}"
                    f"{row[2] / mib:>11.1f}{row[2] / weight_bytes:>7.2f}"
                    + (f"{gpu / mib:>10.1f}{gpu / weight_bytes:>7.2f}" if gpu is not None else "")
                    + f"  {'ok' if result['forward_ok'] else 'NOT FINITE'} "
                    f"({', '.join(result['dtypes'])} on {', '.join(result['devices'])})"
                )
                lines += ratio_lines(result, baseline, weight_bytes, layout, device_map)
        print("\n".join(lines))


if __name__ == "__main__":
    main()
