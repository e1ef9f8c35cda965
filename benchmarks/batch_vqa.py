# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Visual question answering throughput: items/s of batched `generate` (one left-padded batch of 8 image + question
items) against answering them one at a time, measured in the same run.

    python benchmarks/batch_vqa.py [--models nano mid] [--batch-size 8] [--max-new-tokens 16] [--repeats 3]
        [--device cpu|cuda] [--threads N]

The items are the example images of the demo (`spaces/examples/`: CT and MR DICOMs, a NIfTI volume, two JPEGs) with
short questions. Each measured call covers the whole request: the processor (reading DICOM / NIfTI / JPEG, resizing,
tokenising, padding), greedy `generate` and decoding the answers. Models:

- `nano`: the embedded UniMedVL-Nano model (trained; its answers end early, so a batch runs until its longest answer);
- `mid`: a random UniMedVL of 8 MoT layers of width 768 with images up to 224 px (256 ViT tokens);
- `14b`: a random UniMedVL of the release's sizes with the release's image sizes, in bf16 (for a GPU).

It prints items/s for both ways, `ratio=` batched / one-by-one items/s, and whether the batched answers equal the
one-by-one answers (left padding must not change them).
"""

import argparse
import itertools
import pathlib
import statistics

import torch

from _models import (
    IMAGE_SIDE,
    add_device_arguments,
    build_unimedvl,
    chat_inputs,
    device_and_dtype,
    load_processor,
    random_config,
    timed,
)
from unimedvl import UniMedVLForConditionalGeneration, UniMedVLProcessor
from unimedvl.hub import NANO_MODEL_PATH


EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "spaces" / "examples"
IMAGES = ("CT_small.dcm", "MR_small.dcm", "fundus.jpg", "ihc_colon.jpg", "head_phantom.nii.gz")
QUESTIONS = (
    "What imaging modality is this?",
    "Which organ is shown in this image?",
    "Is there any abnormality? Answer briefly.",
)


def vqa_items(count: int) -> list[list[dict]]:
    """`count` one-turn conversations (an example image, then a question), cycling through images and questions."""
    pairs = zip(itertools.cycle(IMAGES), itertools.cycle(QUESTIONS))
    return [
        [{"role": "user", "content": [{"type": "image", "image": str(EXAMPLES / image)}, {"type": "text", "text": q}]}]
        for image, q in itertools.islice(pairs, count)
    ]


def load_model(name: str, device: torch.device, dtype: torch.dtype):
    """(model, processor) of `name`: the embedded nano model, or a random `mid` / `14b` UniMedVL."""
    if name == "nano":
        model = UniMedVLForConditionalGeneration.from_pretrained(NANO_MODEL_PATH, dtype=dtype).to(device)
        return model.eval(), UniMedVLProcessor.from_pretrained(NANO_MODEL_PATH)
    processor = load_processor(IMAGE_SIDE[name])
    return build_unimedvl(random_config(name, processor.tokenizer), device, dtype), processor


def answer(model, processor, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers to a batch of conversations, from chat messages to strings (left padding for batches)."""
    inputs = chat_inputs(processor, conversations, model.device)
    with torch.inference_mode():
        sequences = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.post_process_image_text_to_text(sequences[:, inputs["input_ids"].shape[1] :])


def compare(name: str, args, device: torch.device, dtype: torch.dtype) -> None:
    """Times both ways on model `name`, alternating, and prints items/s, `ratio=` and the answer check."""
    model, processor = load_model(name, device, dtype)
    items = vqa_items(args.batch_size)

    def one_by_one():
        return [answer(model, processor, [item], args.max_new_tokens)[0] for item in items]

    def batched():
        return answer(model, processor, items, args.max_new_tokens)

    same = [single == together for single, together in zip(one_by_one(), batched())]  # also the warm-up
    times = {"one by one": [], f"batch of {len(items)}": []}
    for _ in range(args.repeats):
        for run, runs in zip((one_by_one, batched), times.values()):
            runs.append(timed(run, device)[0])
    speeds = {way: len(items) / statistics.median(runs) for way, runs in times.items()}
    print(f"{name} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters):")
    for way, speed in speeds.items():
        print(f"  {way:>12}: {speed:7.2f} items/s")
    single, together = speeds.values()
    print(f"  ratio={together / single:.2f} (batched / one-by-one items/s); "
          f"same answers as one by one: {sum(same)}/{len(same)}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["nano", "mid"], choices=("nano", "mid", "14b"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    add_device_arguments(parser)
    args = parser.parse_args()
    device, dtype = device_and_dtype(args)
    print(f"device={device} dtype={dtype} threads={torch.get_num_threads()} max_new_tokens={args.max_new_tokens} "
          f"repeats={args.repeats}")  # fmt: skip
    for name in args.models:
        compare(name, args, device, dtype)


if __name__ == "__main__":
    main()
