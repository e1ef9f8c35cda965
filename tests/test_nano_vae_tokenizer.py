# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The UniMedVL-Nano prerequisites: the small Qwen2-style tokenizer and the small FLUX-style VAE (fast checks)."""

import json

import pytest
import torch
from diffusers import AutoencoderKL
from transformers import AutoTokenizer

from unimedvl import UniMedVLImageProcessor, UniMedVLProcessor, load_image
from unimedvl.pipelines.autoencoder_unimedvl import decode_latents, encode_image_latents
from unimedvl.train.nano_tokenizer import QWEN2_ADDED_TOKENS, train_tokenizer
from unimedvl.train.nano_vae import (
    WEIGHTS_NAME,
    build_nano_vae,
    pil_to_pixels,
    random_crops,
    random_flips,
    reconstruct,
    set_latent_statistics,
    train_autoencoder,
)


TEXTS = [
    "Which imaging modality is this?",
    "CT",
    "MRI",
    "An axial CT slice of the head in a bone window.",
    "A T1-weighted MRI of the head, sagittal plane.",
    "Show this CT slice in a lung window.",
    "Increase the resolution of this image.",
    "An H&E-stained histopathology image patch.",
]
VOCAB_SIZE = 400


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nano_tokenizer")
    train_tokenizer(TEXTS * 10, folder, vocab_size=VOCAB_SIZE)  # repeated: frequent texts win the merges
    return folder


def test_tokenizer_added_tokens_follow_the_vocabulary_in_qwen_order(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tokenizer) == VOCAB_SIZE + len(QWEN2_ADDED_TOKENS)
    for offset, (content, special) in enumerate(QWEN2_ADDED_TOKENS):
        assert tokenizer.convert_tokens_to_ids(content) == VOCAB_SIZE + offset
        assert tokenizer.added_tokens_decoder[VOCAB_SIZE + offset].special is special
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert tokenizer.padding_side == "left"
    # special tokens are single ids inside text; <|im_end|> ends a sequence
    ids = tokenizer.encode("<|im_start|>CT<|im_end|>")
    assert ids[0] == VOCAB_SIZE + 1 and ids[-1] == tokenizer.eos_token_id


def test_tokenizer_pipeline_is_qwen2s(tokenizer_dir, reference_checkpoint):
    """Same normaliser, pre-tokeniser, decoder and BPE options as the fixture's Qwen2 tokenizer; different merges."""
    ours = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    reference = json.loads((reference_checkpoint / "tokenizer.json").read_text())
    for key in ("normalizer", "pre_tokenizer", "decoder"):
        assert ours[key] == reference[key], key
    options = {key: value for key, value in ours["model"].items() if key not in ("vocab", "merges")}
    assert options == {key: value for key, value in reference["model"].items() if key not in ("vocab", "merges")}


def test_tokenizer_round_trips_any_text(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    for text in [*TEXTS, "Höhe: 12.5 mm, 3 × 4 — ok?\n\tneue Zeile", "emoji 🩻 and 中文"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
    assert len(tokenizer.encode("Which imaging modality is this?")) <= 6  # whole words from the training texts


def test_tokenizer_works_in_the_processor(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left")
    image_processor = UniMedVLImageProcessor(size={"longest_edge": 112, "shortest_edge": 56})
    processor = UniMedVLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    messages = [{"role": "user", "content": [{"type": "image", "image": torch.zeros(64, 64, 3, dtype=torch.uint8)},
                                             {"type": "text", "text": "Which imaging modality is this?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "CT"}]}]
    inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    ids = inputs["input_ids"][0]
    rows, cols = inputs["image_grid_hw"][0].tolist()
    assert int((ids == processor.image_token_id).sum()) == rows * cols
    text = tokenizer.decode(ids[ids != processor.image_token_id])
    assert text == ("<|vision_start|><|vision_end|><|im_start|>Which imaging modality is this?<|im_end|>"
                    "<|im_start|>CT<|im_end|>")


def test_tokenizer_training_is_deterministic(tokenizer_dir, tmp_path):
    train_tokenizer(TEXTS * 10, tmp_path, vocab_size=VOCAB_SIZE)
    names = sorted(path.name for path in tokenizer_dir.iterdir())
    assert names == sorted(path.name for path in tmp_path.iterdir())
    for name in names:
        assert (tmp_path / name).read_bytes() == (tokenizer_dir / name).read_bytes(), name


@pytest.fixture(scope="module")
def small_scans():
    """pydicom's CT and MR test slices as 64x64 RGB in [-1, 1]."""
    get_testdata_file = pytest.importorskip("pydicom.data").get_testdata_file
    images = [load_image(get_testdata_file(name)).resize((64, 64)) for name in ("CT_small.dcm", "MR_small.dcm")]
    return pil_to_pixels(images)


def _train(pixels, steps):
    return train_autoencoder(pixels, steps=steps, batch_size=2, seed=0, lr=3e-3)


def test_vae_training_lowers_the_reconstruction_error(small_scans):
    before = (reconstruct(build_nano_vae(0).eval(), small_scans) - small_scans).abs().mean()
    vae, losses = _train(small_scans, steps=25)
    after = (reconstruct(vae, small_scans) - small_scans).abs().mean()
    assert len(losses) == 25 and losses[-1] < losses[0]
    assert after < 0.7 * before


def test_vae_saves_latent_statistics_and_round_trips_through_the_model_maps(small_scans, tmp_path):
    vae, _ = _train(small_scans, steps=2)
    statistics = set_latent_statistics(vae, small_scans, seed=0)
    assert all(map(torch.isfinite, torch.tensor(list(statistics.values()))))
    assert statistics["scaling_factor"] > 0
    vae.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["scaling_factor"], config["shift_factor"]) == (statistics["scaling_factor"],
                                                                  statistics["shift_factor"])
    assert (tmp_path / WEIGHTS_NAME).stat().st_size < 2_000_000

    loaded = AutoencoderKL.from_pretrained(tmp_path).eval()
    assert (loaded.config.latent_channels, loaded.config.use_quant_conv, loaded.config.use_post_quant_conv) == (
        16, False, False)
    with torch.no_grad():
        latents = encode_image_latents(loaded, small_scans, generator=torch.Generator().manual_seed(0))
        assert latents.shape == (2, 16, 8, 8)
        # the normalised latents of the calibration images have zero mean and unit std (up to the 4-digit rounding)
        assert abs(latents.mean().item()) < 0.01 and abs(latents.std().item() - 1) < 0.01
        assert decode_latents(loaded, latents).shape == (2, 3, 64, 64)
        assert torch.equal(reconstruct(loaded, small_scans), reconstruct(vae, small_scans))


def test_vae_training_is_deterministic(small_scans):
    first, first_losses = _train(small_scans, steps=3)
    second, second_losses = _train(small_scans, steps=3)
    assert first_losses == second_losses
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_vae_augmentations_flip_only_flippable_images_and_crop_windows():
    pixels = torch.randn(6, 3, 64, 64)
    flippable = torch.tensor([True, False] * 3)
    generator = torch.Generator().manual_seed(0)
    flipped = torch.stack([random_flips(pixels, flippable, generator) for _ in range(8)])
    assert torch.equal(flipped[:, ~flippable], pixels[~flippable].expand(8, -1, -1, -1, -1))
    assert not torch.equal(flipped[:, flippable], pixels[flippable].expand(8, -1, -1, -1, -1))
    crops = random_crops(pixels, 32, generator)
    assert crops.shape == (6, 3, 32, 32)
    for crop, image in zip(crops, pixels):
        windows = image.unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 33, 33, 32, 32)
        assert (windows == crop[:, None, None]).all(dim=(0, 3, 4)).any()
