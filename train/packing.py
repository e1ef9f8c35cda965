# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Schema samples → token blocks (with the reference's condition dropout) → rows packed into a token budget.

Layout of one sample (architecture notes §5): every text item is `<|im_start|>` ids `<|im_end|>`; every image is
`<|vision_start|>` placeholders `<|vision_end|>`, one RoPE position for the whole block. Per item:

| item | blocks | RoPE advance | loss | droppable (CFG) |
|---|---|---|---|---|
| system/user text | text | its length | none | in samples that generate an image (`text_cond_dropout`) |
| assistant text | text | its length | CE on the ids and `<|im_end|>` | never |
| system/user image, understanding sample | ViT | 1 | none | never |
| system/user image, generating sample | clean VAE, then ViT | 1 each | none | `vae_cond_dropout`, `vit_cond_dropout` |
| assistant image | noised VAE target (+ clean copy if more content follows) | 0 (+1) | MSE | copy as VAE |

A dropped text block is removed and advances RoPE by 0; a dropped image is removed and still advances 1. Target images
get t = shift(sigmoid(n)), n ~ N(0, 1). All randomness of a sample comes from its own `random.Random`, seeded by its
draw, so a resumed run re-creates it exactly.
"""

import logging
import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..modeling.image_processing_unimedvl import UniMedVLImageProcessor, patchify
from ..pipelines.autoencoder_unimedvl import encode_image_latents
from .config import DataArguments
from .schema import ImageDecodeError, SampleSchemaError, decode_image

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class LongSampleError(ValueError):
    """A sample with more tokens than `data.max_tokens_per_sample`."""


@dataclass
class SpecialTokenIds:
    """Ids of the markers the layout uses."""

    im_start: int
    im_end: int
    vision_start: int
    vision_end: int
    image_pad: int
    latent_pad: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialTokenIds":
        names = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|vision_pad|>")
        ids = [tokenizer.convert_tokens_to_ids(name) for name in names]
        missing = [name for name, token_id in zip(names, ids) if token_id is None or token_id == tokenizer.unk_token_id]
        if missing:
            raise ValueError(f"The tokenizer lacks the special tokens {missing}.")
        return cls(*ids)


@dataclass
class EncodedSample:
    """One sample as token ids and image inputs (lists; `collate_packed` turns several into one row)."""

    input_ids: list = field(default_factory=list)
    position_ids: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    vit_patches: list = field(default_factory=list)  # (h * w, 3 * 14 * 14) float32 arrays
    vit_grids: list = field(default_factory=list)  # (h, w) patch grids
    vae_images: list = field(default_factory=list)  # (3, H, W) float32 tensors in [-1, 1]
    latent_grids: list = field(default_factory=list)  # (H / 16, W / 16) token grids
    latent_timesteps: list = field(default_factory=list)  # t per latent image (0 = clean conditioning)
    latent_targets: list = field(default_factory=list)  # True for noised targets (MSE)
    task: str = "understanding"
    source: str = ""
    rope: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    def add_text(self, ids: list[int], tokens: SpecialTokenIds, loss: bool):
        block = [tokens.im_start, *ids, tokens.im_end]
        self.input_ids += block
        self.position_ids += range(self.rope, self.rope + len(block))
        # Labels follow the model's HF convention (shifted inside): `<|im_start|>` and the ids predict the ids and
        # `<|im_end|>`.
        self.labels += [IGNORE_INDEX, *block[1:]] if loss else [IGNORE_INDEX] * len(block)
        self.rope += len(block)

    def add_image_block(self, placeholder: int, count: int, tokens: SpecialTokenIds, advance: bool):
        self.input_ids += [tokens.vision_start, *[placeholder] * count, tokens.vision_end]
        self.position_ids += [self.rope] * (count + 2)
        self.labels += [IGNORE_INDEX] * (count + 2)
        self.rope += int(advance)


class SampleEncoder:
    """Tokenises a schema sample and applies the image rules, the condition dropout and the timestep draw.

    Args:
        tokenizer: the model's tokenizer (text items are encoded one by one, without special tokens).
        data_args: image rules (`vit_resize`, `vae_resize` = [max_size, min_size, stride, max_pixels]) and dropout.
        timestep_shift: training shift s of t ← s·t / (1 + (s − 1)·t).
        latent_downsample: pixels per latent token side (16); `vae_resize`'s stride must be a multiple of it.
        max_latent_size: side of the latent position table; larger images are an error.
        vit_patch_size / vit_max_patches_per_side: the ViT's patch side and position table side.
    """

    def __init__(
        self,
        tokenizer,
        data_args: DataArguments,
        timestep_shift: float = 1.0,
        latent_downsample: int = 16,
        max_latent_size: int = 64,
        vit_patch_size: int = 14,
        vit_max_patches_per_side: int = 70,
    ):
        self.tokenizer = tokenizer
        self.tokens = SpecialTokenIds.from_tokenizer(tokenizer)
        self.data_args = data_args
        self.timestep_shift = timestep_shift
        self.latent_downsample = latent_downsample
        self.image_processor = UniMedVLImageProcessor()
        vit_max, _, vit_stride, _ = data_args.vit_resize
        vae_max, _, vae_stride, _ = data_args.vae_resize
        if vit_stride != vit_patch_size or vit_max > vit_patch_size * vit_max_patches_per_side:
            raise ValueError(f"data.vit_resize {data_args.vit_resize}: the stride must be the ViT patch size "
                             f"{vit_patch_size} and the max size <= {vit_patch_size * vit_max_patches_per_side}.")
        if vae_stride % latent_downsample or vae_max > latent_downsample * max_latent_size:
            raise ValueError(f"data.vae_resize {data_args.vae_resize}: the stride must be a multiple of "
                             f"{latent_downsample} and the max size <= {latent_downsample * max_latent_size} "
                             "(the model's max_latent_size).")

    def _vit_inputs(self, image: Image.Image, num_images: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
        max_size, min_size, stride, max_pixels = self.data_args.vit_resize
        image = self.image_processor.resize_image(image, max_size, min_size, stride, max_pixels, num_images)
        patches = patchify(self.image_processor.to_normalized_array(image), stride)
        return patches, (image.height // stride, image.width // stride)

    def _vae_inputs(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        max_size, min_size, stride, max_pixels = self.data_args.vae_resize
        image = self.image_processor.resize_image(image, max_size, min_size, stride, max_pixels)
        pixels = torch.from_numpy(self.image_processor.to_normalized_array(image))
        return pixels, (image.height // self.latent_downsample, image.width // self.latent_downsample)

    def sample_timestep(self, rng: random.Random) -> float:
        """Logit-normal t = sigmoid(n), n ~ N(0, 1), then the shift s·t / (1 + (s − 1)·t)."""
        t = 1.0 / (1.0 + np.exp(-rng.gauss(0.0, 1.0)))
        shift = self.timestep_shift
        return float(shift * t / (1.0 + (shift - 1.0) * t))

    def _add_latent(self, encoded: EncodedSample, image: Image.Image, timestep: float, target: bool):
        pixels, grid = self._vae_inputs(image)
        encoded.vae_images.append(pixels)
        encoded.latent_grids.append(grid)
        encoded.latent_timesteps.append(timestep)
        encoded.latent_targets.append(target)
        encoded.add_image_block(self.tokens.latent_pad, grid[0] * grid[1], self.tokens, advance=not target)

    def _add_vit(self, encoded: EncodedSample, image: Image.Image, num_images: int = 1):
        patches, grid = self._vit_inputs(image, num_images)
        encoded.vit_patches.append(patches)
        encoded.vit_grids.append(grid)
        encoded.add_image_block(self.tokens.image_pad, grid[0] * grid[1], self.tokens, advance=True)

    def encode(self, sample: dict, rng: random.Random) -> EncodedSample:
        """Builds the blocks of one schema sample.

        Raises:
            `ImageDecodeError`: an image of the sample cannot be decoded.
            `SampleSchemaError`: nothing left to learn (e.g. only empty assistant text).
        """
        args = self.data_args
        generates = bool(sample["output_images"])
        inputs, outputs = iter(sample["images"]), iter(sample["output_images"])
        items = [(message["role"], item) for message in sample["messages"] for item in message["content"]]
        encoded = EncodedSample(task=sample["task"], source=sample.get("_source", ""))
        for index, (role, item) in enumerate(items):
            assistant = role == "assistant"
            if item["type"] == "text":
                ids = self.tokenizer.encode(item["text"], add_special_tokens=False)
                if not ids:
                    continue
                if not assistant and generates and rng.random() < args.text_cond_dropout:
                    continue  # a dropped text block leaves RoPE where it was
                encoded.add_text(ids, self.tokens, loss=assistant)
            elif assistant:
                image = decode_image(next(outputs))
                self._add_latent(encoded, image, self.sample_timestep(rng), target=True)
                if index + 1 < len(items):  # later blocks condition on the clean image
                    if rng.random() < args.vae_cond_dropout:
                        encoded.rope += 1
                    else:
                        self._add_latent(encoded, image, 0.0, target=False)
            else:
                image = decode_image(next(inputs))
                if not generates:
                    self._add_vit(encoded, image, num_images=len(sample["images"]))
                    continue
                # A generating sample sees its input as a clean VAE block, then a ViT block; a dropped image block
                # still takes its position.
                if rng.random() < args.vae_cond_dropout:
                    encoded.rope += 1
                else:
                    self._add_latent(encoded, image, 0.0, target=False)
                if rng.random() < args.vit_cond_dropout:
                    encoded.rope += 1
                else:
                    self._add_vit(encoded, image)
        if not any(encoded.latent_targets) and all(label == IGNORE_INDEX for label in encoded.labels):
            raise SampleSchemaError(f"dataset {encoded.source!r} draw {sample.get('_draw')}: no token to learn after "
                                    "tokenisation (empty assistant text?).")
        return encoded


# ---------------------------------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class DataStats:
    """Counters of what the data pipeline consumed and skipped (logged, and saved in checkpoints)."""

    samples: Counter = field(default_factory=Counter)  # per task
    tokens: int = 0
    skipped_bad_images: int = 0
    skipped_long_samples: int = 0

    def state_dict(self) -> dict:
        return {"samples": dict(self.samples), "tokens": self.tokens, "skipped_bad_images": self.skipped_bad_images,
                "skipped_long_samples": self.skipped_long_samples}

    def load_state_dict(self, state: dict):
        self.samples = Counter(state["samples"])
        self.tokens = state["tokens"]
        self.skipped_bad_images = state["skipped_bad_images"]
        self.skipped_long_samples = state["skipped_long_samples"]


def sample_rng(seed: int, shard: int, draw: int) -> random.Random:
    """The per-sample RNG (dropout, timesteps), a function of the draw only."""
    return random.Random(f"sample/{seed}/{shard}/{draw}")


class TokenBudgetPacker:
    """Greedy packing of encoded samples into rows of about `max_tokens_per_step` tokens.

    A row is closed once it reaches `max_tokens_per_step`, or when the next sample would push it over
    `max_tokens_hard_cap` (that sample then opens the next row). Samples over `max_tokens_per_sample` raise
    [`LongSampleError`] or are skipped with a counted warning (`data.on_long_sample`); undecodable images raise
    [`ImageDecodeError`] or skip their sample with a counted warning (`data.on_bad_image`).

    `state_dict()` is the stream position just before the sample that will open the next row, so restoring it
    rebuilds exactly the rows an uninterrupted run would have built.
    """

    def __init__(self, stream, encoder: SampleEncoder, data_args: DataArguments, seed: int, shard: int = 0):
        self.stream = stream
        self.encoder = encoder
        self.data_args = data_args
        self.seed = seed
        self.shard = shard
        self.stats = DataStats()
        self._pending: EncodedSample | None = None
        self._pending_state: dict | None = None

    def _next_sample(self) -> tuple[EncodedSample, dict]:
        args = self.data_args
        while True:
            state = self.stream.state_dict()
            sample = next(self.stream)
            where = f"dataset {sample['_source']!r} draw {sample['_draw']}"
            try:
                encoded = self.encoder.encode(sample, sample_rng(self.seed, self.shard, sample["_draw"]))
            except ImageDecodeError as error:
                if args.on_bad_image == "error":
                    raise ImageDecodeError(f"{where}: {error} (set data.on_bad_image: skip to skip such samples)")
                self.stats.skipped_bad_images += 1
                logger.warning("Skipping %s: %s (%d sample(s) skipped for bad images so far)", where, error,
                               self.stats.skipped_bad_images)
                continue
            if encoded.num_tokens > args.max_tokens_per_sample:
                message = (f"{where} has {encoded.num_tokens} tokens, more than data.max_tokens_per_sample = "
                           f"{args.max_tokens_per_sample}")
                if args.on_long_sample == "error":
                    raise LongSampleError(f"{message}; raise the budget, shrink `vit_resize` / `vae_resize`, or set "
                                          "data.on_long_sample: skip.")
                self.stats.skipped_long_samples += 1
                logger.warning("Skipping: %s (%d long sample(s) skipped so far)", message,
                               self.stats.skipped_long_samples)
                continue
            return encoded, state

    def next_row(self) -> list[EncodedSample]:
        """The samples of the next packed row."""
        args = self.data_args
        row, used = [], 0
        while True:
            if self._pending is None:
                self._pending, self._pending_state = self._next_sample()
            if row and used + self._pending.num_tokens > args.max_tokens_hard_cap:
                break
            sample, self._pending, self._pending_state = self._pending, None, None
            row.append(sample)
            used += sample.num_tokens
            self.stats.samples[sample.task] += 1
            self.stats.tokens += sample.num_tokens
            if used >= args.max_tokens_per_step:
                break
        return row

    def state_dict(self) -> dict:
        stream = self._pending_state if self._pending is not None else self.stream.state_dict()
        return {"stream": stream, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict):
        self.stream.load_state_dict(state["stream"])
        self.stats.load_state_dict(state["stats"])
        self._pending = self._pending_state = None


def collate_packed(samples: list[EncodedSample]) -> dict:
    """Samples → one packed row of model inputs (batch size 1, no padding).

    Returns:
        `dict` with `input_ids`, `position_ids`, `labels`, `sample_ids` `(1, L)`; `pixel_values` `(num_patches, 588)`
        and `image_grid_hw` `(num_vit_images, 2)` (or `None`); `vae_images` (list of `(3, H, W)` tensors, encoded by
        [`encode_latent_tokens`] on the training device), `latent_grid_hw` `(num_latent_images, 2)`,
        `latent_timesteps` and `latent_loss_mask` `(num_latent_images,)` (or `None`); and the counts
        `num_ce_tokens`, `num_mse_tokens`, `num_tokens`, `num_samples`.
    """
    batch = {
        "input_ids": torch.tensor([sum((s.input_ids for s in samples), [])]),
        "position_ids": torch.tensor([sum((s.position_ids for s in samples), [])]),
        "labels": torch.tensor([sum((s.labels for s in samples), [])]),
        "sample_ids": torch.tensor([[i for i, s in enumerate(samples) for _ in range(s.num_tokens)]]),
        "pixel_values": None,
        "image_grid_hw": None,
        "vae_images": [image for s in samples for image in s.vae_images],
        "latent_grid_hw": None,
        "latent_timesteps": None,
        "latent_loss_mask": None,
    }
    patches = [p for s in samples for p in s.vit_patches]
    if patches:
        batch["pixel_values"] = torch.from_numpy(np.concatenate(patches))
        batch["image_grid_hw"] = torch.tensor([g for s in samples for g in s.vit_grids])
    if batch["vae_images"]:
        batch["latent_grid_hw"] = torch.tensor([g for s in samples for g in s.latent_grids])
        batch["latent_timesteps"] = torch.tensor([t for s in samples for t in s.latent_timesteps])
        batch["latent_loss_mask"] = torch.tensor([m for s in samples for m in s.latent_targets])
    grids = batch["latent_grid_hw"]
    batch["num_ce_tokens"] = int((batch["labels"] != IGNORE_INDEX).sum())
    batch["num_mse_tokens"] = 0 if grids is None else int((grids.prod(-1) * batch["latent_loss_mask"]).sum())
    batch["num_tokens"] = batch["input_ids"].shape[1]
    batch["num_samples"] = len(samples)
    return batch


# ---------------------------------------------------------------------------------------------------------------------
# Latents
# ---------------------------------------------------------------------------------------------------------------------


def pack_latent_tokens(latent: torch.Tensor, patch_size: int = 2) -> torch.Tensor:
    """`(C, H, W)` latent → `(H/p · W/p, p · p · C)` tokens, row-major, each ordered (row in patch, column, channel)."""
    channels, height, width = latent.shape
    h, w = height // patch_size, width // patch_size
    tokens = latent.reshape(channels, h, patch_size, w, patch_size).permute(1, 3, 2, 4, 0)
    return tokens.reshape(h * w, patch_size * patch_size * channels)


@torch.no_grad()
def encode_latent_tokens(
    vae, images: list[torch.Tensor], patch_size: int = 2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """VAE-encodes images (posterior sample, scaled and shifted) and packs them into latent tokens.

    Images of the same size are encoded as one batch; each image is encoded at its own size (the reference instead
    zero-pads all images of a row to a common size, which slightly changes border latents of the smaller ones).

    Args:
        vae: the frozen `AutoencoderKL`.
        images: `(3, H, W)` tensors in [-1, 1], in order of appearance.
        generator: RNG of the posterior samples (torch's global RNG when `None`).
    Returns:
        `(sum(H/16 · W/16), 64)` float32 tokens in the same order.
    """
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(tuple(image.shape[1:]), []).append(index)
    latents: list[torch.Tensor | None] = [None] * len(images)
    for indices in by_size.values():
        encoded = encode_image_latents(vae, torch.stack([images[i] for i in indices]), generator=generator)
        for index, latent in zip(indices, encoded):
            latents[index] = pack_latent_tokens(latent.float(), patch_size)
    return torch.cat(latents)


__all__ = [
    "DataStats",
    "EncodedSample",
    "IGNORE_INDEX",
    "LongSampleError",
    "SampleEncoder",
    "SpecialTokenIds",
    "TokenBudgetPacker",
    "collate_packed",
    "encode_latent_tokens",
    "pack_latent_tokens",
    "sample_rng",
]
