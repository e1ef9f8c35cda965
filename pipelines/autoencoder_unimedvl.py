# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The FLUX-style autoencoder of UniMedVL as a diffusers [`AutoencoderKL`].

The release ships `ae.safetensors` (FLUX.1 AE key names, no config) and hard-codes the architecture and the latent
constants in code. This module derives the `AutoencoderKL` config from the tensor shapes, converts the keys with
diffusers' own LDM converter, and exposes the two latent maps of the original `AutoEncoder`:

- encode: `z = scaling_factor * (sample - shift_factor)`, where `sample` is **drawn from the posterior**
  (`mean + exp(logvar / 2) * eps`), not its mode;
- decode: `x = Dec(z / scaling_factor + shift_factor)`.

diffusers applies neither map inside `AutoencoderKL.encode` / `decode`, so callers go through
[`encode_image_latents`] and [`decode_latents`].
"""

import os
import re

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file


SCALING_FACTOR = 0.3611
SHIFT_FACTOR = 0.1159
AE_WEIGHTS_NAME = "ae.safetensors"

# Wrappers found in front of the AE keys: DDP (`module.`) and the trainer's attribute name (`vae_model.`).
_KEY_PREFIXES = ("module.", "vae_model.")

_RESNET = r"(?:norm1|conv1|norm2|conv2|nin_shortcut)"
_FLUX_AE_KEY = re.compile(
    r"(?:"
    r"(?:encoder|decoder)\.(?:conv_in|conv_out|norm_out)"
    rf"|encoder\.down\.\d+\.(?:block\.\d+\.{_RESNET}|downsample\.conv)"
    rf"|decoder\.up\.\d+\.(?:block\.\d+\.{_RESNET}|upsample\.conv)"
    r"|(?:encoder|decoder)\.mid\.(?:block_[12]\.(?:norm1|conv1|norm2|conv2)|attn_1\.(?:norm|q|k|v|proj_out))"
    r")\.(?:weight|bias)"
)
_REQUIRED_KEYS = (
    "encoder.conv_in.weight",
    "encoder.conv_out.weight",
    "encoder.mid.attn_1.q.weight",
    "decoder.conv_in.weight",
    "decoder.conv_out.weight",
    "decoder.mid.attn_1.q.weight",
)


def _strip_key_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Removes any leading `module.` / `vae_model.` (in any order and number) from every key."""
    stripped = {}
    for key, tensor in state_dict.items():
        while key.startswith(_KEY_PREFIXES):
            key = key.split(".", 1)[1]
        stripped[key] = tensor
    return stripped


def _check_flux_autoencoder_keys(state_dict: dict[str, torch.Tensor]) -> None:
    """Raises a `ValueError` naming the keys that are missing from, or foreign to, a FLUX-style AE state dict."""
    missing = [key for key in _REQUIRED_KEYS if key not in state_dict]
    unexpected = sorted(key for key in state_dict if not _FLUX_AE_KEY.fullmatch(key))
    if missing or unexpected:
        raise ValueError(
            "Not a FLUX-style autoencoder state dict (the layout of UniMedVL's `ae.safetensors`): "
            f"missing keys {missing}, unexpected keys {unexpected[:10]}"
            + (f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else "")
        )


def _block_indices(state_dict: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """Sorted distinct integers `i` over the keys starting with `prefix + "{i}."`."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(match.group(1)) for key in state_dict if (match := pattern.match(key))})


def _check_contiguous(indices: list[int], what: str) -> None:
    if not indices or indices != list(range(len(indices))):
        raise ValueError(f"Not a FLUX-style autoencoder state dict: {what} are numbered {indices}, expected 0..n-1")


def autoencoder_config_from_original(
    state_dict: dict[str, torch.Tensor],
    scaling_factor: float = SCALING_FACTOR,
    shift_factor: float = SHIFT_FACTOR,
    sample_size: int = 1024,
) -> dict:
    """
    Derives the diffusers `AutoencoderKL` config of an original (FLUX-style) `ae.safetensors` from its tensor shapes.

    No config ships with the release, whose loader hard-codes the 14B sizes (`block_out_channels` (128, 256, 512,
    512), 2 res-blocks per level); reading the shapes also covers other sizes such as the tiny test AE.

    Args:
        state_dict (`dict[str, torch.Tensor]`):
            Original AE weights, optionally prefixed with `module.` and/or `vae_model.`. Meta tensors suffice.
        scaling_factor (`float`, *optional*, defaults to 0.3611):
            Latent scale of the release (hard-coded there).
        shift_factor (`float`, *optional*, defaults to 0.1159):
            Latent shift of the release (hard-coded there).
        sample_size (`int`, *optional*, defaults to 1024):
            Largest generated side; only used by diffusers' tiled encoding/decoding.

    Returns:
        `dict`: keyword arguments for `AutoencoderKL(**config)`.

    Raises:
        `ValueError`: if the state dict is not a FLUX-style AE or its levels are inconsistent.
    """
    state_dict = _strip_key_prefixes(state_dict)
    _check_flux_autoencoder_keys(state_dict)

    encoder_levels = _block_indices(state_dict, "encoder.down.")
    decoder_levels = _block_indices(state_dict, "decoder.up.")
    _check_contiguous(encoder_levels, "encoder levels `encoder.down.{i}`")
    if decoder_levels != encoder_levels:
        raise ValueError(
            f"Inconsistent FLUX-style autoencoder: encoder levels {encoder_levels} but decoder levels {decoder_levels}"
        )

    res_blocks = [_block_indices(state_dict, f"encoder.down.{i}.block.") for i in encoder_levels]
    for level, blocks in zip(encoder_levels, res_blocks):
        _check_contiguous(blocks, f"res-blocks `encoder.down.{level}.block.{{j}}`")
    if len({len(blocks) for blocks in res_blocks}) != 1:
        raise ValueError(f"Inconsistent FLUX-style autoencoder: res-blocks per encoder level {res_blocks}")

    # A level's width is the output width of its res-blocks (FLUX: ch * ch_mult[i]).
    block_out_channels = [state_dict[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in encoder_levels]
    latent_channels = state_dict["decoder.conv_in.weight"].shape[1]
    if state_dict["encoder.conv_out.weight"].shape[0] != 2 * latent_channels:
        raise ValueError(
            "Inconsistent FLUX-style autoencoder: `encoder.conv_out` must emit mean and logvar "
            f"(2 x {latent_channels} channels), got {state_dict['encoder.conv_out.weight'].shape[0]}"
        )

    num_levels = len(block_out_channels)
    return {
        "in_channels": state_dict["encoder.conv_in.weight"].shape[1],
        "out_channels": state_dict["decoder.conv_out.weight"].shape[0],
        "down_block_types": ["DownEncoderBlock2D"] * num_levels,
        "up_block_types": ["UpDecoderBlock2D"] * num_levels,
        "block_out_channels": block_out_channels,
        "layers_per_block": len(res_blocks[0]),
        "act_fn": "silu",
        "latent_channels": latent_channels,
        "norm_num_groups": 32,
        "sample_size": sample_size,
        "scaling_factor": scaling_factor,
        "shift_factor": shift_factor,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": True,
    }


def convert_original_autoencoder(state_dict: dict[str, torch.Tensor], config: dict | None = None) -> dict:
    """
    Maps original FLUX-style AE keys to diffusers `AutoencoderKL` keys.

    The mapping itself is diffusers' `convert_ldm_vae_checkpoint` (which also squeezes the 1x1 attention convs to
    linear weights). Added here: stripping `module.` / `vae_model.`, rejecting keys the converter would silently drop,
    and making the squeezed views contiguous so they can be saved.

    Args:
        state_dict (`dict[str, torch.Tensor]`): original AE weights.
        config (`dict`, *optional*): the `AutoencoderKL` config; derived from the shapes when omitted.

    Returns:
        `dict[str, torch.Tensor]`: the same tensors under diffusers names.
    """
    state_dict = _strip_key_prefixes(state_dict)
    _check_flux_autoencoder_keys(state_dict)
    config = config if config is not None else autoencoder_config_from_original(state_dict)
    converted = convert_ldm_vae_checkpoint(state_dict, config)
    if len(converted) != len(state_dict):
        raise ValueError(
            f"Converted {len(converted)} of {len(state_dict)} autoencoder tensors; the config does not match the "
            f"state dict ({len(config['down_block_types'])} levels configured)"
        )
    return {key: tensor.contiguous() for key, tensor in converted.items()}


def load_original_autoencoder(
    path_or_state_dict: str | os.PathLike | dict[str, torch.Tensor],
    torch_dtype: torch.dtype | None = None,
) -> AutoencoderKL:
    """
    Builds a diffusers `AutoencoderKL` from the original UniMedVL `ae.safetensors`.

    Args:
        path_or_state_dict (`str`, `os.PathLike` or `dict[str, torch.Tensor]`):
            The file, a folder holding `ae.safetensors` (e.g. the original release folder), or its state dict.
        torch_dtype (`torch.dtype`, *optional*):
            Parameter dtype; float32 when omitted (the release file is bfloat16, which upcasts exactly).

    Returns:
        `AutoencoderKL`: in eval mode, with every parameter loaded from the checkpoint.

    Raises:
        `ValueError`: if the state dict is not a FLUX-style AE, or if any parameter is missing, unexpected or of the
            wrong shape.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = os.fspath(path_or_state_dict)
        state_dict = load_file(os.path.join(path, AE_WEIGHTS_NAME) if os.path.isdir(path) else path)
    else:
        state_dict = path_or_state_dict
    config = autoencoder_config_from_original(state_dict)
    converted = convert_original_autoencoder(state_dict, config)

    # Meta init: no random init of weights that are all overwritten right after.
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    expected = {key: tensor.shape for key, tensor in vae.state_dict().items()}
    missing = sorted(expected.keys() - converted.keys())
    unexpected = sorted(converted.keys() - expected.keys())
    mismatched = [
        f"{key}: {tuple(converted[key].shape)} vs {tuple(shape)}"
        for key, shape in expected.items()
        if key in converted and converted[key].shape != shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"Autoencoder weights do not fit the derived config: missing {missing}, unexpected {unexpected}, "
            f"shape mismatches (checkpoint vs model) {mismatched}"
        )

    dtype = torch_dtype or torch.float32
    vae.load_state_dict({key: tensor.to(dtype) for key, tensor in converted.items()}, strict=True, assign=True)
    return vae.eval()


def _check_image_batch(tensor: torch.Tensor, channels: int, name: str) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or tensor.shape[1] != channels:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"`{name}` must be a tensor of shape (batch, {channels}, height, width), got {shape}")


def encode_image_latents(
    vae: AutoencoderKL,
    pixel_values: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    sample_posterior: bool = True,
    posterior_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Encodes images into the model's latent space exactly as the original `AutoEncoder.encode`.

    The original samples the posterior: `z = mean + exp(logvar / 2) * eps`, eps ~ N(0, 1) in the shape of the mean,
    then returns `scaling_factor * (z - shift_factor)`. With `generator=None` eps comes from torch's global RNG like
    the original's `randn_like`, so `torch.manual_seed(s)` reproduces the original's draw.

    diffusers' `latent_dist.logvar` is clamped to [-30, 20], the original's is not; the moments are therefore split
    from the raw `latent_dist.parameters` (which still honours VAE slicing and tiling).

    Args:
        vae (`AutoencoderKL`): the converted autoencoder.
        pixel_values (`torch.Tensor` of shape `(batch, 3, height, width)`): images in [-1, 1], on the device the VAE
            runs on.
        generator (`torch.Generator` or `list[torch.Generator]`, *optional*): RNG of the posterior noise.
        sample_posterior (`bool`, *optional*, defaults to `True`): sample (as the original) or take the mean.
        posterior_noise (`torch.Tensor` of shape `(batch, latent_channels, height / 8, width / 8)`, *optional*):
            eps to use instead of drawing it (for parity tests).

    Returns:
        `torch.Tensor` of shape `(batch, latent_channels, height / 8, width / 8)`: scaled and shifted latents.
    """
    _check_image_batch(pixel_values, vae.config.in_channels, "pixel_values")
    if posterior_noise is not None and not sample_posterior:
        raise ValueError("`posterior_noise` is only used when `sample_posterior=True`")

    pixel_values = pixel_values.to(dtype=vae.dtype)  # the caller picks the device (offloading moves the VAE itself)
    mean, logvar = vae.encode(pixel_values).latent_dist.parameters.chunk(2, dim=1)
    if sample_posterior:
        if posterior_noise is None:
            posterior_noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        elif posterior_noise.shape != mean.shape:
            raise ValueError(
                f"`posterior_noise` must have the posterior's shape {tuple(mean.shape)}, "
                f"got {tuple(posterior_noise.shape)}"
            )
        latents = mean + torch.exp(0.5 * logvar) * posterior_noise.to(mean)
    else:
        latents = mean
    return vae.config.scaling_factor * (latents - (vae.config.shift_factor or 0.0))


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """
    Decodes model-space latents exactly as the original `AutoEncoder.decode`: `Dec(latents / scale + shift)`.

    Args:
        vae (`AutoencoderKL`): the converted autoencoder.
        latents (`torch.Tensor` of shape `(batch, latent_channels, height, width)`): scaled and shifted latents, on
            the device the VAE runs on.

    Returns:
        `torch.Tensor` of shape `(batch, 3, 8 * height, 8 * width)`: the raw decoder output, nominally in [-1, 1]
        but not clamped.
    """
    _check_image_batch(latents, vae.config.latent_channels, "latents")
    latents = latents.to(dtype=vae.dtype)
    latents = latents / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
    return vae.decode(latents).sample
