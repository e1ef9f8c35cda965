# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Understanding-only supervised fine-tuning with TRL's `SFTTrainer`, our processor and [`UniMedVLSFTCollator`].

Rows are the sample schema's understanding rows (which are TRL's vision format: `messages` with `{"type": "image"}`
items plus an `images` column); the collator renders them with the processor's chat template (the release's token
layout), and supervises exactly what the native trainer does: each assistant text's ids and its `<|im_end|>`.

```bash
python -m unimedvl.train.sft_trl --model_name_or_path ./UniMedVL-hf --dataset data/vqa.jsonl --format messages \
    --output_dir runs/sft --max_steps 1000 --learning_rate 1e-5
```
Anything beyond these options: build `SFTConfig` / `SFTTrainer` yourself as `main` does (any `SFTConfig` field works;
keep `remove_unused_columns=False` and `dataset_kwargs={"skip_prepare_dataset": True}`). For image generation,
interleaved data and packed rows, use the native trainer (`unimedvl train`).
"""

import argparse

from ..modeling.processing_unimedvl import UniMedVLProcessor
from .packing import IGNORE_INDEX
from .schema import decode_image, normalize_sample


class UniMedVLSFTCollator:
    """Schema rows → a right-padded batch: `input_ids`, `attention_mask`, `labels` (assistant text and its
    `<|im_end|>`; -100 elsewhere), `pixel_values` `(num_patches, 588)` and `image_grid_hw` `(num_images, 2)`.

    Args:
        processor ([`UniMedVLProcessor`]): its image processor decides the ViT resize.
        max_length (`int`, *optional*): rows longer than this are an error (truncating would cut image blocks).
    """

    def __init__(self, processor: UniMedVLProcessor, max_length: int | None = None):
        self.processor = processor
        self.max_length = max_length

    @staticmethod
    def _conversation(sample: dict) -> list[dict]:
        images = iter(sample["images"])
        conversation = []
        for message in sample["messages"]:
            content = [{"type": "image", "image": decode_image(next(images))} if item["type"] == "image" else item
                       for item in message["content"]]
            conversation.append({"role": message["role"], "content": content})
        return conversation

    def __call__(self, rows: list[dict]) -> dict:
        conversations = []
        for index, row in enumerate(rows):
            sample = normalize_sample(row, f"batch row {index}")
            if sample["output_images"]:
                raise ValueError(f"batch row {index} has output images: TRL SFT is understanding-only; train image "
                                 "generation with `unimedvl train`.")
            conversations.append(self._conversation(sample))
        batch = self.processor.apply_chat_template(
            conversations, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        if self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            raise ValueError(f"a row has {batch['input_ids'].shape[1]} tokens, more than max_length="
                             f"{self.max_length}.")
        assistant = batch.pop("assistant_masks").bool() & batch["attention_mask"].bool()
        batch["labels"] = batch["input_ids"].masked_fill(~assistant, IGNORE_INDEX)
        return dict(batch)


def build_sft_trainer(model, processor: UniMedVLProcessor, train_dataset, args):
    """A `trl.SFTTrainer` wired for UniMedVL: our collator, no TRL-side dataset preparation, extra columns kept."""
    from trl import SFTTrainer

    args.remove_unused_columns = False
    args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    return SFTTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=processor,
                      data_collator=UniMedVLSFTCollator(processor, args.max_length))


def main(argv: list[str] | None = None):
    from trl import SFTConfig

    from ..modeling.modeling_unimedvl import UniMedVLForConditionalGeneration
    from .readers import load_training_dataset

    parser = argparse.ArgumentParser(prog="python -m unimedvl.train.sft_trl", description=__doc__.split("\n")[0])
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--dataset", required=True, help="Hub id or local path (see load_training_dataset)")
    parser.add_argument("--format", default="messages", choices=("messages", "vqa", "unimed5m"))
    parser.add_argument("--image_root", default=None)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=1000)
    parser.add_argument("--learning_rate", type=float, default=1e-5)
    parser.add_argument("--per_device_train_batch_size", type=int, default=1)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args(argv)

    model = UniMedVLForConditionalGeneration.from_pretrained(args.model_name_or_path)
    processor = UniMedVLProcessor.from_pretrained(args.model_name_or_path)
    dataset = load_training_dataset(args.dataset, format=args.format, image_root=args.image_root, task="understanding")
    config = SFTConfig(output_dir=args.output_dir, max_steps=args.max_steps, learning_rate=args.learning_rate,
                       per_device_train_batch_size=args.per_device_train_batch_size,
                       gradient_accumulation_steps=args.gradient_accumulation_steps, bf16=args.bf16, max_length=None,
                       report_to="none")
    trainer = build_sft_trainer(model, processor, dataset, config)
    trainer.train()
    trainer.save_model(args.output_dir)
    processor.save_pretrained(args.output_dir)


if __name__ == "__main__":
    main()


__all__ = ["UniMedVLSFTCollator", "build_sft_trainer"]
