# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The original FLUX-style AE as a diffusers `AutoencoderKL`: config derivation, conversion and latent parity."""

import pathlib

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.torch import load_file

from unimedvl.pipelines.autoencoder_unimedvl import (
    autoencoder_config_from_original,
    convert_original_autoencoder,
    decode_latents,
    encode_image_latents,
    load_original_autoencoder,
)


FIXTURE_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference_tiny"
TINY_AE = dict(ch=32, ch_mult=(1, 2, 1, 1), num_res_blocks=1)
RELEASE_AE = dict(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2)


def _requires_fixture():
    if not (FIXTURE_DIR / "goldens.safetensors").is_file():
        pytest.skip(f"reference fixture not found at {FIXTURE_DIR}")


@pytest.fixture(scope="module")
def original_state_dict():
    _requires_fixture()
    return load_file(FIXTURE_DIR / "checkpoint" / "ae.safetensors")


@pytest.fixture(scope="module")
def goldens():
    _requires_fixture()
    return load_file(FIXTURE_DIR / "goldens.safetensors")


@pytest.fixture(scope="module")
def vae():
    _requires_fixture()
    return load_original_autoencoder(FIXTURE_DIR / "checkpoint")


@pytest.fixture(scope="module")
def edit_pixel_values():
    _requires_fixture()
    image = np.array(Image.open(FIXTURE_DIR / "preprocessed" / "edit_vae_input.png").convert("RGB"))
    pixel_values = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    return ((pixel_values - 0.5) / 0.5)[None]


def _flux_autoencoder_shapes(ch, ch_mult, num_res_blocks, z_channels=16, in_channels=3, out_channels=3):
    """Parameter shapes of the original FLUX `AutoEncoder`, written from its architecture, not from diffusers."""
    shapes = {}

    def conv(name, cout, cin, k=3):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cout, cin)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def mid(prefix, c):
        resnet(f"{prefix}.mid.block_1", c, c)
        norm(f"{prefix}.mid.attn_1.norm", c)
        for proj in ("q", "k", "v", "proj_out"):
            conv(f"{prefix}.mid.attn_1.{proj}", c, c, 1)
        resnet(f"{prefix}.mid.block_2", c, c)

    last = len(ch_mult) - 1
    conv("encoder.conv_in", ch, in_channels)
    width = ch
    for i, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", width, ch * mult)
            width = ch * mult
        if i != last:
            conv(f"encoder.down.{i}.downsample.conv", width, width)
    mid("encoder", width)
    norm("encoder.norm_out", width)
    conv("encoder.conv_out", 2 * z_channels, width)

    width = ch * ch_mult[-1]
    conv("decoder.conv_in", width, z_channels)
    mid("decoder", width)
    for i in reversed(range(len(ch_mult))):
        for j in range(num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", width, ch * ch_mult[i])
            width = ch * ch_mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", width, width)
    norm("decoder.norm_out", width)
    conv("decoder.conv_out", out_channels, width)
    return shapes


def _meta_state_dict(shapes):
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Config derivation and conversion


def test_shape_helper_matches_the_fixture(original_state_dict):
    expected = _flux_autoencoder_shapes(**TINY_AE)
    assert {key: tuple(tensor.shape) for key, tensor in original_state_dict.items()} == expected


def test_config_of_tiny_autoencoder(original_state_dict):
    config = autoencoder_config_from_original(original_state_dict)
    assert config["block_out_channels"] == [32, 64, 32, 32]
    assert config["layers_per_block"] == 1
    assert config["latent_channels"] == 16
    assert (config["in_channels"], config["out_channels"]) == (3, 3)
    assert config["down_block_types"] == ["DownEncoderBlock2D"] * 4
    assert config["up_block_types"] == ["UpDecoderBlock2D"] * 4
    assert (config["scaling_factor"], config["shift_factor"]) == (0.3611, 0.1159)
    assert not config["use_quant_conv"] and not config["use_post_quant_conv"]
    assert config["mid_block_add_attention"] and config["norm_num_groups"] == 32 and config["act_fn"] == "silu"


def test_config_overrides(original_state_dict):
    config = autoencoder_config_from_original(original_state_dict, scaling_factor=1.5, shift_factor=-0.2)
    assert (config["scaling_factor"], config["shift_factor"]) == (1.5, -0.2)


def test_release_sized_autoencoder_converts_on_meta():
    state_dict = _meta_state_dict(_flux_autoencoder_shapes(**RELEASE_AE))
    config = autoencoder_config_from_original(state_dict)
    assert config["block_out_channels"] == [128, 256, 512, 512] and config["layers_per_block"] == 2

    vae = load_original_autoencoder(state_dict)
    assert list(vae.config.block_out_channels) == [128, 256, 512, 512]
    assert sum(p.numel() for p in vae.parameters()) == sum(t.numel() for t in state_dict.values())


@pytest.mark.parametrize("prefix", ["module.", "vae_model.", "module.vae_model."])
def test_prefixed_keys(original_state_dict, prefix):
    prefixed = {prefix + key: tensor for key, tensor in original_state_dict.items()}
    assert autoencoder_config_from_original(prefixed) == autoencoder_config_from_original(original_state_dict)
    assert convert_original_autoencoder(prefixed).keys() == convert_original_autoencoder(original_state_dict).keys()


def test_conversion_keeps_every_tensor(original_state_dict):
    converted = convert_original_autoencoder(original_state_dict)
    assert len(converted) == len(original_state_dict)
    assert converted["encoder.mid_block.attentions.0.to_q.weight"].shape == (32, 32)
    assert torch.equal(
        converted["decoder.up_blocks.0.upsamplers.0.conv.weight"],
        original_state_dict["decoder.up.3.upsample.conv.weight"],
    )


def test_loaded_parameters_equal_checkpoint(vae, original_state_dict):
    assert all(p.dtype == torch.float32 and not p.is_meta for p in vae.parameters())
    loaded = vae.state_dict()
    for key, tensor in convert_original_autoencoder(original_state_dict).items():
        assert torch.equal(loaded[key], tensor.float()), key
    assert load_original_autoencoder(original_state_dict, torch_dtype=torch.bfloat16).dtype == torch.bfloat16


def test_not_a_flux_autoencoder_is_rejected():
    with pytest.raises(ValueError, match="Not a FLUX-style autoencoder.*decoder.conv_in.weight"):
        autoencoder_config_from_original({"model.layers.0.weight": torch.zeros(2)})


def test_missing_and_foreign_keys_are_named(original_state_dict):
    without = {k: v for k, v in original_state_dict.items() if k != "decoder.conv_in.weight"}
    with pytest.raises(ValueError, match="missing keys \\['decoder.conv_in.weight'\\]"):
        load_original_autoencoder(without)

    extra = {**original_state_dict, "quant_conv.weight": torch.zeros(32, 32, 1, 1)}
    with pytest.raises(ValueError, match="unexpected keys \\['quant_conv.weight'\\]"):
        load_original_autoencoder(extra)


def test_inconsistent_autoencoder_is_rejected(original_state_dict):
    no_res_block = {k: v for k, v in original_state_dict.items() if not k.startswith("decoder.up.2.block.1.")}
    with pytest.raises(ValueError, match="missing \\[.*decoder.up_blocks.1.resnets.1.conv1.weight"):
        load_original_autoencoder(no_res_block)

    no_level = {k: v for k, v in original_state_dict.items() if not k.startswith("decoder.up.3.")}
    with pytest.raises(ValueError, match="decoder levels \\[0, 1, 2\\]"):
        load_original_autoencoder(no_level)

    wrong_width = {**original_state_dict, "decoder.conv_in.weight": torch.zeros(64, 16, 3, 3)}
    with pytest.raises(ValueError, match="decoder.conv_in.weight: \\(64, 16, 3, 3\\) vs \\(32, 16, 3, 3\\)"):
        load_original_autoencoder(wrong_width)


# ---------------------------------------------------------------------------------------------------------------------
# Numerical parity with the reference goldens


@torch.no_grad()
def test_posterior_moments(vae, goldens, edit_pixel_values):
    mean, logvar = vae.encode(edit_pixel_values).latent_dist.parameters.chunk(2, dim=1)
    torch.testing.assert_close(mean, goldens["edit.vae_posterior_mean"], rtol=0, atol=1e-4)
    torch.testing.assert_close(logvar, goldens["edit.vae_posterior_logvar"], rtol=0, atol=1e-4)


@torch.no_grad()
def test_encode_with_injected_posterior_noise(vae, goldens, edit_pixel_values):
    latents = encode_image_latents(vae, edit_pixel_values, posterior_noise=goldens["edit.vae_posterior_eps"])
    torch.testing.assert_close(latents, goldens["edit.vae_input_latent"], rtol=0, atol=1e-4)


@torch.no_grad()
def test_encode_with_global_seed_matches_reference_draw(vae, goldens, edit_pixel_values):
    # The reference seeds the global RNG and draws eps with randn_like: edit seed 4321, train latent seed 98.
    torch.manual_seed(4321)
    latents = encode_image_latents(vae, edit_pixel_values)
    torch.testing.assert_close(latents, goldens["edit.vae_input_latent"], rtol=0, atol=1e-4)

    torch.manual_seed(98)
    latents = encode_image_latents(vae, goldens["train.padded_images"])
    torch.testing.assert_close(latents, goldens["train.padded_latent"], rtol=0, atol=1e-4)


@torch.no_grad()
def test_encode_with_generator_and_mode(vae, goldens, edit_pixel_values):
    sample = encode_image_latents(vae, edit_pixel_values, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(sample.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, encode_image_latents(vae, edit_pixel_values, posterior_noise=eps))

    mode = encode_image_latents(vae, edit_pixel_values, sample_posterior=False)
    expected = 0.3611 * (goldens["edit.vae_posterior_mean"] - 0.1159)
    torch.testing.assert_close(mode, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("case", ["t2i", "edit"])
@torch.no_grad()
def test_decode_latents(vae, goldens, case):
    decoded = decode_latents(vae, goldens[f"{case}.final_latent_nchw"])
    torch.testing.assert_close(decoded, goldens[f"{case}.decoder_output_raw"], rtol=0, atol=1e-3)

    # The reference truncates (not rounds) to uint8.
    image = ((decoded[0] * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0)
    assert (image.int() - goldens[f"{case}.decoded_image_uint8"].int()).abs().max() <= 1


@torch.no_grad()
def test_save_pretrained_round_trip(vae, goldens, edit_pixel_values, tmp_path):
    vae.save_pretrained(tmp_path)
    reloaded = AutoencoderKL.from_pretrained(tmp_path)
    assert reloaded.config.shift_factor == 0.1159 and list(reloaded.config.block_out_channels) == [32, 64, 32, 32]

    eps = goldens["edit.vae_posterior_eps"]
    assert torch.equal(
        encode_image_latents(reloaded, edit_pixel_values, posterior_noise=eps),
        encode_image_latents(vae, edit_pixel_values, posterior_noise=eps),
    )
    latents = goldens["t2i.final_latent_nchw"]
    assert torch.equal(decode_latents(reloaded, latents), decode_latents(vae, latents))


# ---------------------------------------------------------------------------------------------------------------------
# Bad inputs


def test_bad_image_inputs(vae, edit_pixel_values):
    with pytest.raises(ValueError, match="pixel_values"):
        encode_image_latents(vae, edit_pixel_values[0])
    with pytest.raises(ValueError, match="pixel_values"):
        encode_image_latents(vae, edit_pixel_values[:, :1])
    with pytest.raises(ValueError, match="latents"):
        decode_latents(vae, torch.zeros(16, 8, 8))
    with pytest.raises(ValueError, match="latents"):
        decode_latents(vae, torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="posterior's shape"):
        encode_image_latents(vae, edit_pixel_values, posterior_noise=torch.zeros(1, 16, 8, 8))
    with pytest.raises(ValueError, match="sample_posterior"):
        encode_image_latents(vae, edit_pixel_values, sample_posterior=False, posterior_noise=torch.zeros(1))
