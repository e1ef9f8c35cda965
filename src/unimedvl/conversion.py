# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Convert the original UniMedVL release into our Hugging Face layout.

The destination receives, from the writers in `WRITERS`:

- `config.json` (every setting the release keeps in code, plus an `auto_map`), `model*.safetensors` shards and
  `generation_config.json` (stop at `<|im_end|>`, pad with `<|endoftext|>`);
- the processor: tokenizer files, `chat_template.jinja`, `processor_config.json` (image processor settings);
- the custom code (`configuration_unimedvl.py`, `modeling_unimedvl.py`, `original_checkpoint.py`,
  `processing_unimedvl.py`, `image_processing_unimedvl.py`, `medical_io.py`), so that
  `AutoModelForImageTextToText.from_pretrained(dst, trust_remote_code=True)` works without this package.

- the diffusers pipeline: `model_index.json`, `vae/` (the release's `ae.safetensors` as an `AutoencoderKL`),
  `scheduler/`, `pipeline_unimedvl.py` and its sibling modules, and `model/` + `processor/` component folders, so that
  `DiffusionPipeline.from_pretrained(dst, trust_remote_code=True)` works too. The weight shards live in `model/` and the
  root index points there: transformers and diffusers share one copy of the weights.

Everything is built in a hidden sibling folder and renamed into place at the end, so an interrupted conversion never
leaves a half-written destination.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import GenerationConfig
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from .modeling.configuration_unimedvl import UniMedVLConfig
from .modeling.image_processing_unimedvl import UniMedVLImageProcessor
from .modeling.modeling_unimedvl import UniMedVLForConditionalGeneration, UniMedVLModel
from .modeling.original_checkpoint import ORIGINAL_WEIGHT_FILES, check_checkpoint_folder, resolve_original_checkpoint
from .modeling.processing_unimedvl import UniMedVLProcessor


# Answer length of the release's VQA script (`Bagel.chat` with `max_length=512`, which counts the start token, so its
# answers stop one token earlier). That script samples at temperature 1.0 (its example cell uses 0.1); converted
# checkpoints default to greedy decoding, which is deterministic: pass `do_sample=True, temperature=...` to `generate`
# for the script's behaviour.
RELEASE_MAX_NEW_TOKENS = 512

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ConversionContext:
    """What every writer gets: the release folder to read and the staging folder to fill."""

    source: Path
    staging: Path
    dtype: torch.dtype | None
    max_shard_size: str | int
    original_weights: str


Writer = Callable[[ConversionContext], None]


def release_generation_config(config: UniMedVLConfig) -> GenerationConfig:
    """Decoding defaults of a converted checkpoint: greedy, at most 512 new tokens, stop at `<|im_end|>`."""
    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_new_tokens=RELEASE_MAX_NEW_TOKENS,
        do_sample=False,
    )


@contextlib.contextmanager
def registered_for_auto_classes():
    """Register our classes with the Auto API for the duration of a save, so that `save_pretrained` copies the code
    files and writes `auto_map`; afterwards (and for other saves) the classes are as before."""
    registrations = (
        (UniMedVLConfig, "AutoConfig"),
        (UniMedVLForConditionalGeneration, "AutoModelForImageTextToText"),
        (UniMedVLImageProcessor, "AutoImageProcessor"),
        (UniMedVLProcessor, "AutoProcessor"),
    )
    previous = {cls: cls.__dict__.get("_auto_class") for cls, _ in registrations}
    try:
        for cls, auto_class in registrations:
            cls.register_for_auto_class(auto_class)
        yield
    finally:
        for cls, auto_class in previous.items():
            cls._auto_class = auto_class


def write_model(context: ConversionContext) -> None:
    """Weights (sharded safetensors), `config.json` with `auto_map`, `generation_config.json` and the model code."""
    model = UniMedVLForConditionalGeneration.from_pretrained(
        context.source, dtype=context.dtype or "auto", original_weights=context.original_weights
    )
    model.generation_config = release_generation_config(model.config)
    # `save_pretrained` adds AutoConfig and AutoModelForImageTextToText; the base model lives in the same file.
    model.config.auto_map = {"AutoModel": f"{UniMedVLModel.__module__.rsplit('.', 1)[-1]}.{UniMedVLModel.__name__}"}
    with registered_for_auto_classes():
        model.save_pretrained(context.staging, max_shard_size=context.max_shard_size)


def write_processor(context: ConversionContext) -> None:
    """Tokenizer, chat template, image processor settings and the processor code."""
    processor = UniMedVLProcessor.from_pretrained(context.source)
    with registered_for_auto_classes():
        processor.save_pretrained(context.staging)


def write_pipeline(context: ConversionContext) -> None:
    """The diffusers side, next to the transformers files: `model_index.json`, `vae/` (converted from the release's
    `ae.safetensors`), `scheduler/`, the pipeline code, and the `model/` and `processor/` component folders.

    The weight shards move into `model/` and the root index points at them there, so `from_pretrained` of
    transformers (root) and diffusers (`model/`) read the same files: the weights are stored once."""
    from diffusers import __version__ as diffusers_version
    from diffusers.utils.dynamic_modules_utils import get_relative_import_files

    from .pipelines import pipeline_unimedvl
    from .pipelines.autoencoder_unimedvl import AE_WEIGHTS_NAME, load_original_autoencoder
    from .pipelines.presets import TEXT_TO_IMAGE_DEFAULTS
    from .pipelines.scheduling_unimedvl import build_flow_match_scheduler

    staging = context.staging
    _move_weights_into(staging, "model")
    write_processor(dataclasses.replace(context, staging=staging / "processor"))
    vae = load_original_autoencoder(context.source / AE_WEIGHTS_NAME, torch_dtype=context.dtype)
    vae.save_pretrained(staging / "vae", max_shard_size=context.max_shard_size)
    build_flow_match_scheduler(TEXT_TO_IMAGE_DEFAULTS.timestep_shift).save_pretrained(staging / "scheduler")
    pipeline_file = Path(pipeline_unimedvl.__file__)
    for code_file in [pipeline_file, *map(Path, get_relative_import_files(pipeline_file))]:
        shutil.copy2(code_file, staging / code_file.name)
    model_index = {
        "_class_name": [pipeline_file.stem, "UniMedVLPipeline"],
        "_diffusers_version": diffusers_version,
        "model": [Path(sys.modules[UniMedVLForConditionalGeneration.__module__].__file__).stem, "UniMedVLForConditionalGeneration"],
        "processor": [Path(sys.modules[UniMedVLProcessor.__module__].__file__).stem, "UniMedVLProcessor"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (staging / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")


def _move_weights_into(staging: Path, component: str) -> None:
    """Make `staging/component` a complete transformers folder holding the weight files, and leave at the root a
    config, the code and a `model.safetensors.index.json` whose entries point into `component/`."""
    from transformers.dynamic_module_utils import get_relative_import_files

    folder = staging / component
    folder.mkdir()
    model_code = staging / Path(sys.modules[UniMedVLForConditionalGeneration.__module__].__file__).name
    for path in [staging / "config.json", staging / "generation_config.json", model_code]:
        shutil.copy2(path, folder / path.name)
    for path in get_relative_import_files(model_code):
        shutil.copy2(path, folder / Path(path).name)
    index_path = staging / SAFE_WEIGHTS_INDEX_NAME
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        shutil.move(index_path, folder / SAFE_WEIGHTS_INDEX_NAME)
    else:  # one unsharded file: describe it with an index so the root can point at it
        with safe_open(str(staging / SAFE_WEIGHTS_NAME), framework="pt") as handle:
            keys = list(handle.keys())
        size = (staging / SAFE_WEIGHTS_NAME).stat().st_size
        index = {"metadata": {"total_size": size}, "weight_map": dict.fromkeys(keys, SAFE_WEIGHTS_NAME)}
    for shard in sorted(set(index["weight_map"].values())):
        shutil.move(staging / shard, folder / shard)
    index["weight_map"] = {key: f"{component}/{shard}" for key, shard in index["weight_map"].items()}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


# Called in order on the staging folder.
WRITERS: tuple[Writer, ...] = (write_model, write_processor, write_pipeline)


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    max_shard_size: str | int = "5GB",
    original_weights: str = "ema",
    overwrite: bool = False,
    writers: Sequence[Writer] | None = None,
) -> Path:
    """Write the original-layout checkpoint `src` (a local folder or a Hub repo id) to `dst` in our HF layout.

    Args:
        src: release folder or repo id (`llm_config.json`, `vit_config.json`, `ema.safetensors`, tokenizer files).
        dst: destination folder; must not exist or be empty unless `overwrite=True`.
        dtype: weight dtype of the output (`torch.float32`, `"bfloat16"`, ...); `None` keeps the stored dtype.
        max_shard_size: largest weight shard, e.g. `"5GB"`.
        original_weights: `"ema"` (the released weights) or `"model"` (raw training weights, when shipped).
        overwrite: replace a non-empty `dst`.
        writers: what to write, in order (default: `WRITERS`).

    Returns:
        The destination folder.
    """
    dst = Path(dst).expanduser().absolute()
    _check_destination(dst, overwrite)
    dtype = _as_dtype(dtype)
    source = _resolve_source(src)
    if source.resolve() == dst.resolve():
        raise ValueError(f"DST '{dst}' is the source folder itself; choose another destination.")
    staging = _sibling(dst, "partial")
    staging.mkdir(parents=True)
    context = ConversionContext(source, staging, dtype, max_shard_size, original_weights)
    try:
        for writer in WRITERS if writers is None else writers:
            writer(context)
        _move_into_place(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dst


def _check_destination(dst: Path, overwrite: bool) -> None:
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"DST '{dst}' exists and is not a folder.")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise ValueError(f"DST '{dst}' is not empty; pass --overwrite (`overwrite=True`) to replace it.")


def _resolve_source(src: str | os.PathLike) -> Path:
    """Local folder of the release, downloading a Hub repo if needed; clear errors for anything else."""
    check_checkpoint_folder(src)  # a local folder of neither layout
    source = resolve_original_checkpoint(src)
    if source is not None:
        return source
    if Path(src).is_dir():
        raise ValueError(f"SRC '{src}' is already in the Hugging Face layout (it has a config.json); nothing to do.")
    raise ValueError(
        f"SRC '{src}' is neither a local folder nor a Hub repo (in the local cache when offline) in the original "
        f"release layout (llm_config.json, vit_config.json, {ORIGINAL_WEIGHT_FILES['ema']})."
    )


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of auto, {', '.join(DTYPES)} or a torch.dtype, got {dtype!r}.")
    return DTYPES[dtype]


def _sibling(dst: Path, kind: str) -> Path:
    """A hidden, unique folder name next to `dst` (same file system, so renames are atomic)."""
    return dst.with_name(f".{dst.name}.{kind}-{uuid.uuid4().hex[:8]}")


def _move_into_place(staging: Path, dst: Path) -> None:
    """Rename the finished staging folder to `dst`, replacing an existing `dst` only once the new one is complete."""
    if not dst.exists():
        os.replace(staging, dst)
        return
    backup = _sibling(dst, "old")
    os.replace(dst, backup)
    try:
        os.replace(staging, dst)
    except BaseException:
        os.replace(backup, dst)
        raise
    shutil.rmtree(backup)


__all__ = [
    "WRITERS",
    "ConversionContext",
    "convert_checkpoint",
    "release_generation_config",
    "write_model",
    "write_pipeline",
    "write_processor",
]
