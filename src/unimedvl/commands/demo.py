# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl demo`: open the UniMedVL Space (the Gradio app of `spaces/app.py`) on this machine.

    unimedvl demo                                   # $UNIMEDVL_MODEL, else the released model
    unimedvl demo --model ./UniMedVL-hf --port 7860
    unimedvl demo --model ./tiny --size 64 --steps 2   # a small model on a CPU

Needs Gradio: `pip install "unimedvl[space]"`. The app listens on 127.0.0.1 unless --host says otherwise.
"""

import argparse

from ..spaces.demo_options import add_demo_arguments
from . import CommandError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="open the Gradio demo (chat, reports, text-to-image, image-to-image) locally",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_demo_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> None:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CommandError('the demo needs Gradio: pip install "unimedvl[space]"') from None
    from ..hub import announce_model
    from ..spaces import app

    args.model = announce_model(args.model)  # says so on stderr when the embedded nano model (or $UNIMEDVL_MODEL) runs
    app.run(args)
