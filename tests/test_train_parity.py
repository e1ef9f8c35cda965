"""Parity of the training path with the reference `train` case: the packed layout built by OUR packer from the case's
two schema samples, then the CE / MSE losses of the training forward on it (the reference's stored latent and noise
are injected)."""

import random

import pytest
import torch
from unimedvl.modeling.image_processing_unimedvl import UNDERSTANDING_RESIZE
from unimedvl.train.config import DataArguments, DatasetArguments
from unimedvl.train.packing import SampleEncoder, collate_packed, encode_latent_tokens, pack_latent_tokens
from unimedvl.train.schema import normalize_sample


@pytest.fixture(scope="module")
def case(reference_inputs):
    return reference_inputs["train"]


@pytest.fixture(scope="module")
def packed(case, reference_dir, reference_processor, reference_model):
    images = reference_dir / "images"
    samples = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": case["und_user"]}]},
                {"role": "assistant", "content": case["und_answer"]},
            ],
            "images": [str(images / case["und_image"])],
        },
        {
            "messages": [
                {"role": "user", "content": case["gen_caption"]},
                {"role": "assistant", "content": [{"type": "image"}]},
            ],
            "output_images": [str(images / case["gen_image"])],
        },
    ]
    max_size, min_size, stride = case["gen_vae_transform"]
    data_args = DataArguments(
        datasets=[DatasetArguments(path="unused")],
        text_cond_dropout=0.0,
        vit_cond_dropout=0.0,
        vae_cond_dropout=0.0,
        vit_resize=list(UNDERSTANDING_RESIZE),
        vae_resize=[max_size, min_size, stride, 14 * 14 * 9 * 1024],
    )
    config = reference_model.config
    encoder = SampleEncoder(
        reference_processor.tokenizer,
        data_args,
        timestep_shift=config.timestep_shift,
        latent_downsample=config.latent_downsample,
        max_latent_size=config.max_latent_size,
    )
    encoded = [encoder.encode(normalize_sample(s), random.Random(0)) for s in samples]
    return collate_packed(encoded)


def test_packer_reproduces_reference_layout(case, packed, reference_model):
    config = reference_model.config
    input_ids = packed["input_ids"][0]
    assert input_ids.shape[0] == case["sequence_length"]
    assert input_ids[case["packed_text_indexes"]].tolist() == case["packed_text_ids"]
    vit = case["packed_vit_token_indexes"]
    assert (input_ids[vit["start"]:vit["start"] + vit["len"]] == config.image_token_id).all()
    assert (input_ids[case["packed_vae_token_indexes"]] == config.latent_token_id).all()
    assert packed["position_ids"][0].tolist() == case["packed_position_ids"]
    # HF labels sit one position after the reference's `ce_loss_indexes` (the model shifts them back).
    supervised = (packed["labels"][0] != -100).nonzero().squeeze(1)
    assert (supervised - 1).tolist() == case["ce_loss_indexes"]
    assert packed["labels"][0, supervised].tolist() == case["packed_label_ids"]
    assert torch.bincount(packed["sample_ids"][0]).tolist() == case["sample_lens"]
    assert packed["image_grid_hw"].tolist() == [[h // 14 for h in case["und_vit_input_size_hw"]]]
    assert packed["latent_grid_hw"].tolist() == case["patchified_vae_latent_shapes"]
    assert packed["latent_loss_mask"].tolist() == [True]
    assert packed["num_ce_tokens"] == len(case["ce_loss_indexes"])
    assert packed["num_mse_tokens"] == len(case["mse_loss_indexes"])


def test_vae_input_and_latents_match_reference(packed, reference_checkpoint, reference_tensors):
    from unimedvl.pipelines.autoencoder_unimedvl import load_original_autoencoder

    torch.testing.assert_close(packed["vae_images"][0], reference_tensors["train.padded_images"][0], atol=0, rtol=0)
    vae = load_original_autoencoder(reference_checkpoint)
    torch.manual_seed(98)  # the reference's latent seed: the posterior sample is drawn from the global RNG
    tokens = encode_latent_tokens(vae, packed["vae_images"])
    expected = pack_latent_tokens(reference_tensors["train.padded_latent"][0])
    torch.testing.assert_close(tokens, expected, atol=1e-4, rtol=0)


def test_training_forward_matches_reference_losses(case, packed, reference_model, reference_goldens,
                                                   reference_tensors):
    model = reference_model
    latents = pack_latent_tokens(reference_tensors["train.padded_latent"][0])
    noise = reference_tensors["train.noise"]
    inputs = {key: packed[key] for key in ("input_ids", "position_ids", "labels", "sample_ids", "pixel_values",
                                            "image_grid_hw", "latent_grid_hw", "latent_loss_mask")}
    inputs.update(latents=latents, latent_noise=noise,
                  latent_timesteps=torch.sigmoid(torch.tensor([case["timestep_logit"]])))  # the reference's fixed logit
    velocities = []
    hook = model.model.llm2vae.register_forward_hook(lambda module, args, output: velocities.append(output))
    model.train()
    try:
        # Logits at the reference's CE positions give the per-token CE; the hook catches the target velocities.
        output = model(**inputs, logits_to_keep=torch.tensor(case["ce_loss_indexes"]))
    finally:
        model.eval()
        hook.remove()
    gold = reference_goldens["train"]
    assert output.loss_ce.item() == pytest.approx(gold["ce_loss_mean"], abs=1e-4)
    assert output.loss_mse.item() == pytest.approx(gold["mse_loss"], abs=1e-4)
    ce = torch.nn.functional.cross_entropy(output.logits[0].float(), torch.tensor(case["packed_label_ids"]),
                                           reduction="none")
    torch.testing.assert_close(ce, reference_tensors["train.ce_per_token"], atol=1e-4, rtol=0)
    mse = (velocities[0].float() - (noise - latents)) ** 2
    torch.testing.assert_close(mse, reference_tensors["train.mse_per_element"], atol=1e-4, rtol=0)
