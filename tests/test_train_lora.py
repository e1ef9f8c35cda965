"""PEFT LoRA on the MoT experts: selection per expert, only adapters train (from the trainer's `lora:` section),
adapter-only saving, reload with `PeftModel.from_pretrained`, and `merge_and_unload` equal to the adapter model."""

import pathlib

import pytest
import torch
from accelerate.utils import set_seed
from peft import PeftModel
from safetensors.torch import load_file
from unimedvl.train.config import LoraArguments, load_config
from unimedvl.train.lora import apply_lora, lora_target_modules
from unimedvl.train.packing import collate_packed
from unimedvl.train.trainer import UniMedVLTrainer, build_model, build_processor

from unimedvl import UniMedVLForConditionalGeneration

TINY = pathlib.Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> pathlib.Path:
    """A saved random tiny model (our HF layout) to put adapters on."""
    path = tmp_path_factory.mktemp("base")
    config = load_config(TINY)
    set_seed(0)
    processor = build_processor(config.model)
    build_model(config.model, processor.tokenizer).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def lora_modules(model) -> set[str]:
    return {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A." in name}


@pytest.mark.parametrize("experts, expected_suffixes", [
    (["understanding"], {"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"}),
    (["generation"], {"self_attn.q_proj_moe_gen", "self_attn.v_proj_moe_gen", "mlp_moe_gen.up_proj"}),
])
def test_expert_selection(base_dir, experts, expected_suffixes):
    model = apply_lora(UniMedVLForConditionalGeneration.from_pretrained(base_dir), LoraArguments(r=2, experts=experts))
    modules = lora_modules(model)
    assert len(modules) == 2 * 7  # 7 projections per layer, 2 layers
    assert all(".language_model.layers." in name for name in modules)  # never the SigLIP q/k/v projections
    assert expected_suffixes <= {name.split(".layers.")[1].split(".", 1)[1] for name in modules}
    is_generation = ["_moe_gen" in name for name in modules]
    assert all(is_generation) if experts == ["generation"] else not any(is_generation)
    assert lora_target_modules(["understanding", "generation"]).count("|") >= 1


def test_lora_training_saving_reloading_and_merging(base_dir, tmp_path):
    config = load_config(TINY, [
        f"training.output_dir={tmp_path}", "training.max_steps=15", "training.report_to=[]", "training.ema_decay=0",
        f"model.pretrained_model_name_or_path={base_dir}", "model.config=null", "model.tokenizer_name_or_path=null",
        "model.init_generation_expert_from_understanding=false", "lora={r: 4, alpha: 8, experts: [understanding, "
        "generation]}",
    ])
    trainer = UniMedVLTrainer(config)
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    final = trainer.train()

    base_weights = load_file(base_dir / "model.safetensors")
    trained_base = peft_model.get_base_model().state_dict()
    for key, tensor in base_weights.items():  # the base model did not move
        module_key = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(trained_base.get(key, trained_base.get(module_key)), tensor), key
    assert (final / "adapter_config.json").is_file() and (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()  # adapter only
    lora_b = [t for k, t in load_file(final / "adapter_model.safetensors").items() if "lora_B" in k]
    assert any(t.abs().sum() > 0 for t in lora_b)  # the adapters trained (lora_B starts at zero)

    batch = collate_packed(trainer.packers[0].next_row())
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "sample_ids", "pixel_values", "image_grid_hw")}
    if batch["latent_grid_hw"] is not None:
        inputs.update(latents=torch.randn(int(batch["latent_grid_hw"].prod(-1).sum()), 64),
                      latent_grid_hw=batch["latent_grid_hw"], latent_timesteps=batch["latent_timesteps"])
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**inputs).logits
        reloaded = PeftModel.from_pretrained(UniMedVLForConditionalGeneration.from_pretrained(base_dir), final).eval()
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=1e-5, rtol=1e-5)
        merged = reloaded.merge_and_unload()
        assert isinstance(merged, UniMedVLForConditionalGeneration)
        torch.testing.assert_close(merged(**inputs).logits, expected, atol=1e-4, rtol=1e-4)
