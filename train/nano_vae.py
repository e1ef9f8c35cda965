# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Train the small FLUX-style VAE of UniMedVL-Nano on the distinct training images of the nano data set.

```
python -m unimedvl.train.nano_vae DATASET_DIR OUTPUT_DIR [--steps 3000] [--batch-size 32] [--seed 0] [--lr 2e-3]
                                  [--crop-size 32] [--threads 1] [--examples PNG]
```

The release's VAE is a FLUX AE (16 latent channels, 8x downsampling, no quant convs). No pretrained one is
available offline, so this module trains a tiny diffusers [`AutoencoderKL`] of the same layout (4 levels, one
res-block per encoder level, a mid block with attention) from scratch:

- **Data**: every distinct image of the training split (the `modality` rows enumerate them, one per image), all
  modalities, 64x64 RGB in [-1, 1].
- **Augmentation**: random horizontal and vertical flips of histopathology tiles only, where orientation carries no
  meaning. Radiological images, ultrasound and fundus photographs keep their display convention (left/right and
  up/down are anatomical there), so the codec only sees them as the model will.
- **Crops**: most steps see random 32x32 windows (a shift, not a mirror: harmless for every modality) in 4x larger
  batches, which reconstructs better than whole images in the same time; the last 10 % of the steps see whole
  images. See [`train_autoencoder`].
- **Loss**: L1 + `mse_weight` x MSE on the reconstruction of a posterior sample, + `kl_weight` x the KL divergence
  to N(0, 1) per latent element. AdamW, linear warm-up then cosine decay of the learning rate.
- **Latent statistics**: after training, `shift_factor` = mean and `scaling_factor` = 1 / std of posterior samples of
  the training images (over all channels and positions, as FLUX and SD3 did), so the generator sees
  `z_model = scaling_factor * (z - shift_factor)` with zero mean and unit variance
  (see `pipelines.autoencoder_unimedvl.encode_image_latents` / `decode_latents`).

Everything draws from generators seeded by `seed`: on one machine with one thread count, the same arguments give the
same weights.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image

from ..pipelines.autoencoder_unimedvl import decode_latents, encode_image_latents
from .nano_data import load_nano_dataset


LATENT_CHANNELS = 16
BLOCK_OUT_CHANNELS = (16, 32, 32, 32)
NORM_NUM_GROUPS = 4  # 16 groups (one per channel at the 16-wide level) trained much slower here
CROP_SIZE = 32
# Modalities whose images may be flipped: a tissue tile has no orientation.
FLIP_MODALITIES = frozenset({"histopathology"})
EXAMPLE_MODALITIES = ("CT", "MRI")
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def nano_vae_config(image_size: int = 64, block_out_channels=BLOCK_OUT_CHANNELS,
                    norm_num_groups: int = NORM_NUM_GROUPS) -> dict:
    """`AutoencoderKL` keyword arguments of the nano VAE: the FLUX AE layout (4 levels = 8x downsampling, 16 latent
    channels, no quant convs, attention in the mid block), one res-block per encoder level, narrow widths."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * len(block_out_channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(block_out_channels),
        "block_out_channels": list(block_out_channels),
        "layers_per_block": 1,
        "act_fn": "silu",
        "latent_channels": LATENT_CHANNELS,
        "norm_num_groups": norm_num_groups,
        "sample_size": image_size,
        "scaling_factor": 1.0,
        "shift_factor": 0.0,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": True,
    }


def build_nano_vae(seed: int, **config_kwargs) -> AutoencoderKL:
    """A freshly initialised nano VAE; the initialisation draws from torch's global RNG seeded with `seed`, which is
    restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**nano_vae_config(**config_kwargs))


def pil_to_pixels(images) -> torch.Tensor:
    """PIL images of one size -> float tensor (N, 3, H, W) in [-1, 1]."""
    arrays = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).div(127.5).sub(1.0).contiguous()


def pixels_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """Float tensor (N, 3, H, W) in [-1, 1] (clamped) -> uint8 array (N, H, W, 3)."""
    values = (pixels.detach().float().clamp(-1, 1) + 1) * 127.5
    return values.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_distinct_images(dataset_dir, split: str) -> dict:
    """The distinct images of a split (one `modality` row each), in data set order.

    Returns:
        `dict` with `pixels` (tensor (N, 3, H, W) in [-1, 1]) and the lists `modality`, `group_id`, `image_id`.
    """
    rows = load_nano_dataset(dataset_dir, split)
    rows = rows.filter(lambda kind: kind == "modality", input_columns="question_type")
    rows = rows.select_columns(["images", "modality", "group_id", "image_id"])
    return {
        "pixels": pil_to_pixels([images[0] for images in rows["images"]]),
        "modality": rows["modality"],
        "group_id": rows["group_id"],
        "image_id": rows["image_id"],
    }


def random_flips(pixels: torch.Tensor, flippable: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flips each `flippable` image horizontally and vertically, each with probability 1/2."""
    flips = (torch.rand(2, pixels.shape[0], generator=generator) < 0.5) & flippable
    pixels = torch.where(flips[0, :, None, None, None], pixels.flip(-1), pixels)
    return torch.where(flips[1, :, None, None, None], pixels.flip(-2), pixels)


def vae_loss(vae: AutoencoderKL, pixels: torch.Tensor, generator: torch.Generator, mse_weight: float,
             kl_weight: float) -> tuple[torch.Tensor, dict]:
    """L1 + `mse_weight` MSE of the reconstruction of a posterior sample + `kl_weight` KL per latent element."""
    posterior = vae.encode(pixels).latent_dist
    reconstruction = vae.decode(posterior.sample(generator=generator)).sample
    l1 = (reconstruction - pixels).abs().mean()
    mse = (reconstruction - pixels).square().mean()
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    loss = l1 + mse_weight * mse + kl_weight * kl
    return loss, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


def warmup_cosine(steps: int, warmup_steps: int):
    """Learning-rate factor: linear warm-up over `warmup_steps`, then cosine decay to 0 at `steps`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def batch_indices(num_images: int, batch_size: int, steps: int, generator: torch.Generator):
    """Yields `steps` index batches, walking through seeded random permutations of the images (epoch after epoch)."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(num_images, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


def random_crops(pixels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random `size` x `size` window of each image."""
    height, width = pixels.shape[-2:]
    tops = torch.randint(0, height - size + 1, (len(pixels),), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (len(pixels),), generator=generator).tolist()
    return torch.stack([image[:, top:top + size, left:left + size]
                        for image, top, left in zip(pixels, tops, lefts)])


def train_autoencoder(pixels: torch.Tensor, *, flippable: torch.Tensor | None = None, steps: int,
                      batch_size: int, seed: int, lr: float, crop_size: int | None = CROP_SIZE,
                      full_image_fraction: float = 0.1, weight_decay: float = 0.01, mse_weight: float = 0.1,
                      kl_weight: float = 1e-4, warmup_steps: int = 50, log_every: int = 0,
                      **config_kwargs) -> tuple[AutoencoderKL, list[float]]:
    """Trains a fresh nano VAE (`build_nano_vae(seed, **config_kwargs)`) on `pixels`.

    With `crop_size`, steps see random `crop_size`² windows (4x cheaper than whole 64x64 images, so 4x larger
    batches for the same time: on this data that reconstructs better than whole images in equal time), except the
    last `full_image_fraction` of the steps, which see whole images (as many pixels per step: `batch_size` x
    crop area / image area images) so that the mid-block attention also learns the full latent grid.

    Args:
        pixels (`torch.Tensor` of shape `(N, 3, H, W)`): training images in [-1, 1].
        flippable (`torch.Tensor` of shape `(N,)`, *optional*): which images may be flipped; none by default.
        steps, batch_size, lr, weight_decay: AdamW optimisation (`batch_size` is capped at N).
        seed: seeds the initialisation, the batch order, crops, flips and posterior samples.
        crop_size (`int`, *optional*): side of the training crops; `None` trains on whole images only.
        full_image_fraction: fraction of the steps (the last ones) on whole images when cropping.
        mse_weight, kl_weight: loss weights next to the L1 term (see [`vae_loss`]).
        warmup_steps: linear warm-up of the learning rate (capped at a tenth of `steps`).
        log_every: print the losses every this many steps (0: silent).

    Returns:
        `(vae, losses)`: the trained VAE in eval mode (latent statistics not set yet) and the loss of every step.
    """
    vae = build_nano_vae(seed, image_size=pixels.shape[-1], **config_kwargs).train()
    flippable = torch.zeros(len(pixels), dtype=torch.bool) if flippable is None else flippable
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, min(warmup_steps, steps // 10 + 1)))
    batch_size = min(batch_size, len(pixels))
    full_from = steps - round(full_image_fraction * steps) if crop_size else 0
    full_batch_size = max(1, batch_size * crop_size ** 2 // pixels[0, 0].numel()) if crop_size else batch_size
    losses = []
    for step, indices in enumerate(batch_indices(len(pixels), batch_size, steps, generator)):
        if step < full_from:
            batch = random_crops(pixels[indices], crop_size, generator)
        else:
            indices = indices[:full_batch_size]
            batch = pixels[indices]
        batch = random_flips(batch, flippable[indices], generator)
        loss, parts = vae_loss(vae, batch, generator, mse_weight, kl_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            parts = " ".join(f"{name} {value:.4g}" for name, value in parts.items())
            print(f"step {step + 1}/{steps} loss {loss.item():.4f} {parts}", flush=True)
    return vae.eval(), losses


@torch.no_grad()
def set_latent_statistics(vae: AutoencoderKL, pixels: torch.Tensor, seed: int, batch_size: int = 64) -> dict:
    """Sets `shift_factor` = mean and `scaling_factor` = 1 / std of posterior samples of `pixels` (4 significant
    digits, like the release's constants) in `vae.config`.

    Returns:
        `dict` with the two factors and `posterior_std_ratio`: the mean posterior std over the std of the latents
        (how much of the latent spread is encoder noise).
    """
    vae.register_to_config(scaling_factor=1.0, shift_factor=0.0)
    generator = torch.Generator().manual_seed(seed)
    samples, posterior_stds = [], []
    for batch in pixels.split(batch_size):
        samples.append(encode_image_latents(vae, batch, generator=generator))
        posterior_stds.append(vae.encode(batch).latent_dist.std)
    latents = torch.cat(samples)
    shift, std = latents.mean().item(), latents.std().item()
    vae.register_to_config(scaling_factor=float(f"{1 / std:.4g}"), shift_factor=float(f"{shift:.4g}"))
    return {"scaling_factor": vae.config.scaling_factor, "shift_factor": vae.config.shift_factor,
            "posterior_std_ratio": torch.cat(posterior_stds).mean().item() / std}


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Encode (posterior mean) and decode through the model's latent maps; output clamped to [-1, 1]."""
    outputs = [decode_latents(vae, encode_image_latents(vae, batch, sample_posterior=False))
               for batch in pixels.split(batch_size)]
    return torch.cat(outputs).clamp(-1, 1)


def down_up_sample(pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """Trivial baseline: shrink by `factor` (area) and enlarge back (bicubic), like the data set's super-resolution
    inputs."""
    size = pixels.shape[-1]
    images = [Image.fromarray(array) for array in pixels_to_uint8(pixels)]
    return pil_to_pixels([image.resize((size // factor,) * 2, Image.Resampling.BOX)
                          .resize((size,) * 2, Image.Resampling.BICUBIC) for image in images])


def image_similarity(predictions: torch.Tensor, references: torch.Tensor) -> dict:
    """Mean PSNR (dB) and SSIM of uint8 RGB renderings, with the project's `image_similarity` metric."""
    from ..evaluation.metrics import load_metric

    scores = load_metric("image_similarity").compute(
        predictions=list(pixels_to_uint8(predictions)), references=list(pixels_to_uint8(references)), channel_axis=-1)
    return {"psnr": scores["psnr"], "ssim": scores["ssim"], "psnr_per_image": scores["psnr_per_image"]}


def evaluate_reconstruction(vae: AutoencoderKL, images: dict, baseline_factors=(2, 4)) -> dict:
    """PSNR / SSIM of the VAE reconstructions of `images` (from [`load_distinct_images`]), overall and per modality,
    next to those of down-up-sampling baselines."""
    reconstructions = reconstruct(vae, images["pixels"])
    scores = image_similarity(reconstructions, images["pixels"])
    modalities = np.array(images["modality"])
    per_image = np.array(scores.pop("psnr_per_image"))
    scores["psnr_by_modality"] = {modality: float(per_image[modalities == modality].mean())
                                  for modality in sorted(set(images["modality"]))}
    for factor in baseline_factors:
        baseline = image_similarity(down_up_sample(images["pixels"], factor), images["pixels"])
        scores[f"down_up_{factor}x"] = {"psnr": baseline["psnr"], "ssim": baseline["ssim"]}
    return scores


def save_reconstruction_examples(vae: AutoencoderKL, images: dict, path, modalities=EXAMPLE_MODALITIES,
                                 zoom: int = 3) -> list[str]:
    """Writes a PNG grid: the first image of every group of `modalities` (columns), original / VAE reconstruction /
    2x down-up-sampled baseline (rows), enlarged `zoom` times with nearest-neighbour.

    Returns:
        `list[str]`: the image ids shown, left to right.
    """
    first_of_group = {}
    for index, (modality, group) in enumerate(zip(images["modality"], images["group_id"])):
        if modality in modalities:
            first_of_group.setdefault(group, index)
    indices = sorted(first_of_group.values(), key=lambda i: (modalities.index(images["modality"][i]), i))
    originals = images["pixels"][indices]
    rows = [pixels_to_uint8(batch) for batch in (originals, reconstruct(vae, originals), down_up_sample(originals, 2))]
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    image = Image.fromarray(grid)
    image.resize((image.width * zoom, image.height * zoom), Image.Resampling.NEAREST).save(path)
    return [images["image_id"][i] for i in indices]


def weights_size(folder) -> int:
    """Bytes of the saved VAE weights."""
    return (Path(folder) / WEIGHTS_NAME).stat().st_size


def train_nano_vae(dataset_dir, output_dir, *, steps: int = 3000, batch_size: int = 32, seed: int = 0,
                   lr: float = 2e-3, crop_size: int | None = CROP_SIZE, mse_weight: float = 0.1,
                   kl_weight: float = 1e-4, examples_path=None, log_every: int = 0) -> dict:
    """Trains the nano VAE on the distinct training images of a built nano data set, sets its latent statistics,
    saves it with `save_pretrained` (fp32 `config.json` + `diffusion_pytorch_model.safetensors`) and scores it on
    the distinct test images.

    Args:
        dataset_dir: a folder written by `python -m unimedvl.train.build_nano_dataset`.
        output_dir: where the VAE is saved (a converted pipeline's `vae/` folder).
        steps, batch_size, seed, lr, crop_size, mse_weight, kl_weight, log_every: see [`train_autoencoder`].
        examples_path (*optional*): also write [`save_reconstruction_examples`] of the test images to this PNG.

    Returns:
        `dict` of metrics: training time and images, final loss, latent statistics, weight bytes, and test (and
        train) reconstruction PSNR / SSIM with the down-up-sampling baselines.
    """
    train_images = load_distinct_images(dataset_dir, "train")
    test_images = load_distinct_images(dataset_dir, "test")
    flippable = torch.tensor([modality in FLIP_MODALITIES for modality in train_images["modality"]])

    start = time.perf_counter()
    vae, losses = train_autoencoder(train_images["pixels"], flippable=flippable, steps=steps, batch_size=batch_size,
                                    seed=seed, lr=lr, crop_size=crop_size, mse_weight=mse_weight,
                                    kl_weight=kl_weight, log_every=log_every)
    train_seconds = time.perf_counter() - start
    statistics = set_latent_statistics(vae, train_images["pixels"], seed)

    output_dir = Path(output_dir)
    vae.save_pretrained(output_dir)
    metrics = {
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),
        "train_images": len(train_images["pixels"]),
        "steps": steps,
        "batch_size": batch_size,
        "crop_size": crop_size,
        "final_loss": float(np.mean(losses[-20:])),
        **statistics,
        "parameters": sum(p.numel() for p in vae.parameters()),
        "weight_bytes": weights_size(output_dir),
        "test": evaluate_reconstruction(vae, test_images),
        "train": evaluate_reconstruction(vae, train_images, baseline_factors=()),
    }
    if examples_path is not None:
        metrics["example_image_ids"] = save_reconstruction_examples(vae, test_images, examples_path)
    return metrics


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset_dir", help="a built nano data set (python -m unimedvl.train.build_nano_dataset)")
    parser.add_argument("output_dir", help="folder to save the VAE into (config.json + safetensors)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--crop-size", type=int, default=CROP_SIZE, help="training crop side; 0: whole images only")
    parser.add_argument("--mse-weight", type=float, default=0.1)
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 avoids oversubscription on shared cores; results depend on it)")
    parser.add_argument("--examples", help="write original / reconstruction / baseline examples to this PNG")
    parser.add_argument("--log-every", type=int, default=250)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    metrics = train_nano_vae(args.dataset_dir, args.output_dir, steps=args.steps, batch_size=args.batch_size,
                             seed=args.seed, lr=args.lr, crop_size=args.crop_size or None,
                             mse_weight=args.mse_weight, kl_weight=args.kl_weight, examples_path=args.examples,
                             log_every=args.log_every)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
