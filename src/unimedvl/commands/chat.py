# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl chat`: ask UniMedVL about medical images; the answer streams to stdout.

    unimedvl chat --image head_ct.dcm "Which imaging modality is this?"    # the embedded UniMedVL-Nano model
    unimedvl chat --model General-Medical-AI/UniMedVL --image chest.dcm "Describe the findings."
    unimedvl chat --model ./UniMedVL-hf --image head.nii.gz --slice-index 80 --window brain "Any bleeding?"

Without --model (and without $UNIMEDVL_MODEL) the embedded UniMedVL-Nano model answers: a small demo model trained by
this project on a few hundred open images, offline; it only knows its training questions (modality, body part, plane,
CT window, colour, "Describe this image.").

Options, images and the prompt length are all checked before the model is loaded.
"""

import argparse
import re
import sys
import threading

from ..hub import MODEL_ENV_VAR
from ..modeling.medical_io import WINDOW_PRESETS, is_nifti_path, load_image
from . import CommandError


DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "chat",
        help="answer a question about medical images (streams the answer)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", help="the question or instruction, e.g. 'Describe the findings.'")
    parser.add_argument(
        "--model",
        help="Hub repo id or local folder, our layout or the original release layout (default: "
        f"${MODEL_ENV_VAR}, else the embedded UniMedVL-Nano model)",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="FILE",
        help="PNG/JPEG/TIFF, DICOM or NIfTI file; repeat for several images (shown to the model in this order)",
    )
    parser.add_argument("--max-new-tokens", type=_positive_int, default=512, help="longest answer (default: 512)")
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument(
        "--temperature", type=_positive_float, help="sampling temperature, with --do-sample (the release example: 0.1)"
    )
    parser.add_argument(
        "--num-beams", type=_positive_int, default=1, help="beam search width; beams print at the end (default: 1)"
    )
    parser.add_argument(
        "--think", action="store_true", help="the release's reasoning prompt: the answer opens with <think>...</think>"
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="weight dtype; auto = bfloat16 on CUDA (float16 without bf16 support), float16 on MPS, float32 on CPU",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto = CUDA, else MPS, else CPU)"
    )
    parser.add_argument("--frame-index", type=int, help="frame of multi-frame DICOMs (default: the middle frame)")
    parser.add_argument("--slice-index", type=int, help="slice of NIfTI volumes (default: the middle slice)")
    parser.add_argument(
        "--window",
        type=_window,
        help="display window of CT/MR/16-bit data: a preset (" + ", ".join(WINDOW_PRESETS) + ") or CENTER,WIDTH "
        "(default: the DICOM header's window, else min-max)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> None:
    import torch

    from .. import UniMedVLForConditionalGeneration, UniMedVLProcessor
    from ..hub import announce_model, explain_unavailable_model, load_config

    if args.temperature is not None and not args.do_sample:
        raise CommandError("--temperature only applies with --do-sample.")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    images = load_images(args.image, args.frame_index, args.slice_index, args.window)

    model_name = announce_model(args.model)
    with explain_unavailable_model(model_name):
        processor = UniMedVLProcessor.from_pretrained(model_name)
    content = [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": args.question}]
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        think=args.think,
    )
    with explain_unavailable_model(model_name):
        check_context_length(inputs["input_ids"], load_config(model_name), args.max_new_tokens)
        model = UniMedVLForConditionalGeneration.from_pretrained(model_name, dtype=dtype, device_map=str(device))
    model.eval()
    inputs = inputs.to(device)
    generation_kwargs = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, num_beams=args.num_beams)
    if args.temperature is not None:
        generation_kwargs["temperature"] = args.temperature
    if args.num_beams > 1:  # transformers cannot stream beam search
        with torch.inference_mode():
            sequences = model.generate(**inputs, **generation_kwargs)
        answer = processor.decode(sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        sys.stdout.write(answer)
    else:
        stream_generate(model, processor.tokenizer, inputs, generation_kwargs, sys.stdout)
    sys.stdout.write("\n")


def resolve_device(spec: str):
    """`--device` value → `torch.device`, failing clearly when the accelerator is absent."""
    import torch

    if not DEVICE_PATTERN.fullmatch(spec):
        raise CommandError(f"--device: unsupported value {spec!r}; expected auto, cpu, cuda, cuda:N or mps.")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CommandError(f"--device {spec}: CUDA is not available on this machine; use --device cpu.")
        if device.index is not None and device.index >= count:
            raise CommandError(f"--device {spec}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CommandError(f"--device {spec}: MPS (Apple GPU) is not available on this machine; use --device cpu.")
    return device


def resolve_dtype(name: str, device):
    """`--dtype` value → `torch.dtype`; `auto` picks the fastest sensible dtype of the device."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


def load_images(paths: list[str], frame_index: int | None, slice_index: int | None, window) -> list:
    """Read every `--image` as an 8-bit RGB PIL image (DICOM / NIfTI / 16-bit windowed), failing on the first bad one.

    `--slice-index` applies to NIfTI volumes and `--frame-index` to everything else, so both can be given at once.
    """
    is_volume = [is_nifti_path(path) for path in paths]
    if slice_index is not None and not any(is_volume):
        raise CommandError("--slice-index applies to NIfTI volumes (.nii, .nii.gz), and no --image is one.")
    return [
        load_image(
            path,
            frame_index=None if volume else frame_index,
            slice_index=slice_index if volume else None,
            window=window,
        )
        for path, volume in zip(paths, is_volume, strict=True)
    ]


def check_context_length(input_ids, config, max_new_tokens: int) -> None:
    """Refuse a prompt that, with the answer, would not fit the model's RoPE context.

    Text tokens take one position each and a whole image block (`<|vision_start|>`, its patches, `<|vision_end|>`)
    one, as in `UniMedVLModel.get_position_ids`.
    """
    ids = input_ids[0]
    image_block_extra = int((ids == config.image_token_id).sum() + (ids == config.vision_start_token_id).sum())
    positions = ids.numel() - image_block_extra
    limit = config.text_config.max_position_embeddings
    if positions + max_new_tokens > limit:
        raise CommandError(
            f"the prompt takes {positions} positions and --max-new-tokens asks for {max_new_tokens} more, beyond the "
            f"model's context of {limit}; shorten the question or lower --max-new-tokens."
        )


def stream_generate(model, tokenizer, inputs, generation_kwargs: dict, out) -> str:
    """Run `model.generate` in a thread and write the decoded answer to `out` as it comes; returns the answer."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failures = []

    def generate():
        try:
            model.generate(**inputs, **generation_kwargs, streamer=streamer)
        except BaseException as error:  # re-raised in the caller's thread below
            failures.append(error)
            streamer.end()  # unblock the reading loop

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    pieces = []
    for piece in streamer:
        out.write(piece)
        out.flush()
        pieces.append(piece)
    thread.join()
    if failures:
        raise failures[0]
    return "".join(pieces)


def _positive_int(value: str) -> int:
    number = int(value) if value.lstrip("-").isdigit() else None
    if number is None or number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _window(value: str):
    if value in WINDOW_PRESETS:
        return value
    parts = value.split(",")
    try:
        center, width = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a preset ({', '.join(WINDOW_PRESETS)}) or CENTER,WIDTH such as 40,400; got {value!r}"
        ) from None
    return center, width
