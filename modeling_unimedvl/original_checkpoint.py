# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Reading the ORIGINAL UniMedVL / BAGEL release layout.

A release folder (or Hub repo such as `General-Medical-AI/UniMedVL`) holds `llm_config.json`, `vit_config.json`,
`ema.safetensors` (weights, BAGEL key names), `ae.safetensors` (the VAE) and Qwen2 tokenizer files. Its `config.json`,
if any, points at the authors' remote code and is never read. Everything the release does not write down (ViT layers
actually stored, table sizes, latent patch width) is inferred here from tensor shapes, so the same code reads the 14B
release and small test checkpoints.

Loading never copies weights: a staging folder holds our `config.json` and a *symlink* named `model.safetensors` to
the release's weight file, and transformers' own `from_pretrained` (meta-device init, dtype casting, `device_map`) reads
it through a key renaming.
"""

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

from safetensors import safe_open



ORIGINAL_LAYOUT_FILES = ("llm_config.json", "vit_config.json", "ema.safetensors")
ORIGINAL_WEIGHT_FILES = {"ema": "ema.safetensors", "model": "model.safetensors"}
ORIGINAL_VAE_FILE = "ae.safetensors"

# Release key (regex) → our key. Keys outside these prefixes (e.g. `vae_model.*`) belong to the VAE, not to this model.
ORIGINAL_KEY_MAPPING = {
    r"^language_model\.model\.": "model.language_model.",
    r"^language_model\.lm_head\.": "lm_head.",
    r"^vit_model\.vision_model\.": "model.vision_model.",
    r"^connector\.": "model.connector.",
    r"^vit_pos_embed\.": "model.vit_pos_embed.",
    r"^latent_pos_embed\.": "model.latent_pos_embed.",
    r"^time_embedder\.mlp\.0\.": "model.time_embedder.linear_1.",
    r"^time_embedder\.mlp\.2\.": "model.time_embedder.linear_2.",
    r"^vae2llm\.": "model.vae2llm.",
    r"^llm2vae\.": "model.llm2vae.",
}

SPECIAL_TOKENS = {
    "pad_token_id": "<|endoftext|>",
    "bos_token_id": "<|im_start|>",
    "eos_token_id": "<|im_end|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
    "latent_token_id": "<|vision_pad|>",
    "image_token_id": "<|image_pad|>",
}


def is_original_layout(folder: str | os.PathLike) -> bool:
    """Whether a local folder holds the original release files (checked before any `config.json`)."""
    folder = Path(folder)
    return folder.is_dir() and all((folder / name).is_file() for name in ORIGINAL_LAYOUT_FILES)


def check_checkpoint_folder(folder: str | os.PathLike, hf_layout_files: tuple[str, ...] = ("config.json",)) -> None:
    """Raise a clear `OSError` for a local folder that is neither layout, listing what it holds and what each needs.

    A folder that starts the original layout (one of its files is present) but misses others is reported even when it
    has a `config.json` (the release ships one that is not ours). Non-folders (Hub ids) are left to the callers.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    present = sorted(entry.name for entry in folder.iterdir())
    original_missing = [name for name in ORIGINAL_LAYOUT_FILES if name not in present]
    looks_original = len(original_missing) < len(ORIGINAL_LAYOUT_FILES)
    if not original_missing or (not looks_original and any(name in present for name in hf_layout_files)):
        return
    shown = ", ".join(present[:20]) + (f" and {len(present) - 20} more" if len(present) > 20 else "")
    missing = f" (missing here: {', '.join(original_missing)})" if looks_original else ""
    raise OSError(
        f"'{folder}' is not a UniMedVL checkpoint folder. It contains: {shown or 'nothing'}. Expected either our "
        f"Hugging Face layout ({' or '.join(hf_layout_files)} with the weights as model.safetensors or "
        "model.safetensors.index.json + shards, as written by `unimedvl convert`), or the original release layout "
        f"({', '.join(ORIGINAL_LAYOUT_FILES)}, {ORIGINAL_VAE_FILE} and the Qwen2 tokenizer files){missing}."
    )


def resolve_original_checkpoint(path_or_repo_id: str | os.PathLike, weights: bool = True, **hub_kwargs) -> Path | None:
    """Local folder of an original-layout checkpoint, downloading (or reading from the HF cache) a Hub repo if needed.

    Returns `None` when `path_or_repo_id` is not in the original layout (e.g. our converted HF layout). With
    `weights=False` only configs and tokenizer files are fetched from the Hub.
    """
    path = Path(path_or_repo_id)
    if path.is_dir():
        return path if is_original_layout(path) else None
    if path.exists() or str(path_or_repo_id).count("/") != 1:
        return None
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    hub_kwargs = {k: hub_kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only") if k in hub_kwargs}
    try:
        hf_hub_download(str(path_or_repo_id), "llm_config.json", **hub_kwargs)
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
        return None
    patterns = ["*.json", "merges.txt"]
    if weights:
        patterns += [ORIGINAL_VAE_FILE, *ORIGINAL_WEIGHT_FILES.values()]
    return Path(snapshot_download(str(path_or_repo_id), allow_patterns=patterns, **hub_kwargs))


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_tensor_shapes(path: str | os.PathLike) -> dict[str, list[int]]:
    """Tensor shapes of a safetensors file, from its header only (no tensor is read)."""
    with safe_open(str(path), framework="pt") as handle:
        return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}


def special_token_ids(folder: Path) -> dict[str, int]:
    """Ids of the special tokens UniMedVL uses, read from the tokenizer files of the release."""
    vocabulary = {}
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        for token_id, entry in _read_json(config_path).get("added_tokens_decoder", {}).items():
            vocabulary[entry["content"]] = int(token_id)
    if (folder / "added_tokens.json").is_file():
        vocabulary.update(_read_json(folder / "added_tokens.json"))
    if (folder / "tokenizer.json").is_file():
        for entry in _read_json(folder / "tokenizer.json").get("added_tokens", []):
            vocabulary[entry["content"]] = entry["id"]
    missing = [token for token in SPECIAL_TOKENS.values() if token not in vocabulary]
    if missing:
        raise ValueError(f"The tokenizer files in {folder} do not define the special tokens {missing}.")
    return {field: vocabulary[token] for field, token in SPECIAL_TOKENS.items()}


def _count_layers(shapes: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(match.group(1)) for key in shapes if (match := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def _square_side(rows: int, what: str) -> int:
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f"{what} has {rows} rows, which is not a square grid.")
    return side


def original_config_kwargs(folder: str | os.PathLike, weights: str = "ema") -> dict:
    """Keyword arguments of [`UniMedVLConfig`] for a release folder, from its JSON configs, tensor shapes and tokenizer
    (see [`UniMedVLConfig.from_original`]; this module stays free of our other modules so that it can be shipped and
    imported alone by the processor).

    The release's loaders override part of `llm_config.json` in code (q/k norm on, untied head, MoT layers) and run one
    ViT layer fewer than `vit_config.json` says; those facts are written into the config explicitly here.
    """
    folder = Path(folder)
    if weights not in ORIGINAL_WEIGHT_FILES:
        raise ValueError(f"`original_weights` must be one of {sorted(ORIGINAL_WEIGHT_FILES)}, got {weights!r}.")
    weight_file = folder / ORIGINAL_WEIGHT_FILES[weights]
    if not weight_file.is_file():
        raise OSError(f"`original_weights={weights!r}` needs {weight_file}, which does not exist.")
    llm = _read_json(folder / "llm_config.json")
    vit = _read_json(folder / "vit_config.json")
    shapes = read_tensor_shapes(weight_file)
    required = ["language_model.model.embed_tokens.weight", "vae2llm.weight", "latent_pos_embed.pos_embed",
                "vit_model.vision_model.embeddings.position_embedding.weight"]
    missing = [key for key in required if key not in shapes]
    if missing:
        raise ValueError(f"{weight_file} is not a UniMedVL/BAGEL checkpoint: missing {missing}.")

    vocab_size, hidden_size = shapes["language_model.model.embed_tokens.weight"]
    patch_latent_dim = shapes["vae2llm.weight"][1]
    latent_patch_size = 2
    vit_positions = shapes["vit_model.vision_model.embeddings.position_embedding.weight"][0]
    patch_size = vit.get("patch_size", 14)
    text_config = {
        key: llm[key]
        for key in ("hidden_act", "intermediate_size", "max_position_embeddings", "num_attention_heads",
                    "num_key_value_heads", "rms_norm_eps", "attention_dropout", "initializer_range")
        if key in llm
    }
    text_config.update(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=_count_layers(shapes, "language_model.model.layers."),
        rope_parameters={"rope_type": "default", "rope_theta": llm.get("rope_theta", 1e6)},
        qk_norm=True,
        tie_word_embeddings=False,
        use_sliding_window=False,
    )
    vision_config = {
        key: vit[key]
        for key in ("hidden_act", "hidden_size", "intermediate_size", "layer_norm_eps", "num_attention_heads",
                    "num_channels", "attention_dropout")
        if key in vit
    }
    vision_config.update(
        num_hidden_layers=_count_layers(shapes, "vit_model.vision_model.encoder.layers."),
        patch_size=patch_size,
        image_size=_square_side(vit_positions, "The ViT position table") * patch_size,
    )
    token_ids = special_token_ids(folder)
    text_config.update({key: token_ids[key] for key in ("pad_token_id", "bos_token_id", "eos_token_id")})
    return dict(
        text_config=text_config,
        vision_config=vision_config,
        latent_patch_size=latent_patch_size,
        latent_channels=patch_latent_dim // latent_patch_size**2,
        max_latent_size=_square_side(shapes["latent_pos_embed.pos_embed"][0], "The latent position table"),
        timestep_embed_dim=shapes["time_embedder.mlp.0.weight"][1],
        image_token_id=token_ids["image_token_id"],
        latent_token_id=token_ids["latent_token_id"],
        vision_start_token_id=token_ids["vision_start_token_id"],
        vision_end_token_id=token_ids["vision_end_token_id"],
        pad_token_id=token_ids["pad_token_id"],
        bos_token_id=token_ids["bos_token_id"],
        eos_token_id=token_ids["eos_token_id"],
    )


@contextlib.contextmanager
def staged_original_checkpoint(folder: str | os.PathLike, config, weights: str = "ema"):
    """Yield a temporary folder that transformers can load as a regular checkpoint: `config` (a [`UniMedVLConfig`]) saved
    as `config.json`, plus a symlink `model.safetensors` → the release's weight file (so nothing is copied)."""
    folder = Path(folder).resolve()
    with tempfile.TemporaryDirectory(prefix="unimedvl-original-") as staging:
        staging = Path(staging)
        config.save_pretrained(staging)
        os.symlink(folder / ORIGINAL_WEIGHT_FILES[weights], staging / "model.safetensors")
        yield staging
