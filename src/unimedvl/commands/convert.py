# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl convert SRC DST`: write the original release as a Hugging Face checkpoint.

    unimedvl convert General-Medical-AI/UniMedVL ./UniMedVL-hf --dtype bfloat16

DST then loads with `UniMedVLForConditionalGeneration.from_pretrained(DST)`, or without this package with
`AutoModelForImageTextToText.from_pretrained(DST, trust_remote_code=True)` and `AutoProcessor` likewise.
"""

import argparse


DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert the original release layout into a Hugging Face checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="release folder or Hub repo id in the original layout")
    parser.add_argument("dst", metavar="DST", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="weight dtype of the output (default: auto = as stored)"
    )
    parser.add_argument("--max-shard-size", default="5GB", help="largest weight file (default: 5GB)")
    parser.add_argument(
        "--original-weights",
        choices=("ema", "model"),
        default="ema",
        help="ema.safetensors (the released weights, default) or model.safetensors (raw training weights)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from ..conversion import convert_checkpoint

    dst = convert_checkpoint(
        args.src,
        args.dst,
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
        original_weights=args.original_weights,
        overwrite=args.overwrite,
    )
    print(f"Wrote {dst}")
