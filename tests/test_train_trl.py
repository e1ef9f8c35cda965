"""Understanding-only SFT with TRL's `SFTTrainer`, our processor and collator, on the real demo rows."""

import pathlib

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from unimedvl.train.config import load_config
from unimedvl.train.sft_trl import UniMedVLSFTCollator, main
from unimedvl.train.trainer import build_model, build_processor

from unimedvl import UniMedVLForConditionalGeneration, UniMedVLProcessor

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "train" / "configs"


def test_collator_supervises_assistant_text_only():
    processor = build_processor(load_config(CONFIGS / "tiny.yaml").model)
    tokenizer = processor.tokenizer
    image = str(CONFIGS / "tiny_data" / "images" / "MR_small.dcm")
    rows = [
        {"messages": [{"role": "user", "content": "Describe the image."}, {"role": "assistant", "content": "An MRI."}]},
        {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Modality?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "MR."}]}], "images": [image]},
    ]
    batch = UniMedVLSFTCollator(processor)(rows)
    answer = tokenizer.encode("An MRI.", add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert batch["labels"][0][batch["labels"][0] != -100].tolist() == answer
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["image_grid_hw"].shape == (1, 2) and batch["pixel_values"].shape[1] == 588
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_sft_trainer_runs_with_our_processor_and_collator(tmp_path):
    config = load_config(CONFIGS / "tiny.yaml")
    set_seed(0)
    processor = build_processor(config.model)
    base = tmp_path / "base"
    build_model(config.model, processor.tokenizer).save_pretrained(base)
    processor.save_pretrained(base)

    output_dir = tmp_path / "sft"
    main(["--model_name_or_path", str(base), "--dataset", str(CONFIGS / "tiny_data" / "understanding.jsonl"),
          "--image_root", str(CONFIGS / "tiny_data"), "--output_dir", str(output_dir), "--max_steps", "3",
          "--learning_rate", "1e-3", "--per_device_train_batch_size", "2"])
    before, after = load_file(base / "model.safetensors"), load_file(output_dir / "model.safetensors")
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])  # it trained
    model = UniMedVLForConditionalGeneration.from_pretrained(output_dir)
    assert UniMedVLProcessor.from_pretrained(output_dir).tokenizer is not None and model.config.model_type == "unimedvl"
