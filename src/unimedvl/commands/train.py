# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl train CONFIG.yaml`: train or fine-tune UniMedVL from a YAML config (see train/README.md).

    unimedvl train train/configs/tiny.yaml --output-dir runs/tiny
    unimedvl train train/configs/stage3.yaml --resume-from-checkpoint latest

This runs in the current process; for several processes or machines use
`accelerate launch [--config_file train/configs/accelerate/<ddp|fsdp|...>.yaml] -m unimedvl.train CONFIG.yaml`.
"""

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..train.config import add_arguments

    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune from a YAML config (full, LoRA, curriculum stages)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from ..train.trainer import run_from_args

    print(run_from_args(args))
