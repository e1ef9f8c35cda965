# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Settings of the demo app and the command-line options that set them.

Shared by `python spaces/app.py` and `unimedvl demo`; importing this module is cheap (no Gradio, no torch), so the
`unimedvl` command line can build its parser without loading either.
"""

import argparse
from dataclasses import dataclass

from unimedvl.hub import DEFAULT_DEMO_MODEL_ID, MODEL_ENV_VAR

from .demo_uploads import DEFAULT_MAX_UPLOAD_MB


DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class DemoSettings:
    """What the app serves and the defaults its controls start from.

    `size` / `steps` only change the starting values of the sliders (a small model on a CPU wants 64-256 px and a
    few steps; the release runs 1024 px and 49 steps); every request may still choose its own.
    """

    model: str | None = None  # Hub repo id or folder; None: `$UNIMEDVL_MODEL`, else the demo default
    device: str = "auto"
    dtype: str = "auto"
    size: int | None = None  # default output side; None: min(1024, the model's largest side)
    steps: int = 49
    max_new_tokens: int = 512
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    concurrency: int = 1  # model calls running at once (one GPU: 1)
    queue_size: int = 16  # requests waiting; more are refused with "queue full"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the demo: the model and its defaults, then where to serve it."""
    parser.add_argument(
        "--model",
        help=f"Hub repo id or local folder, any layout (default: ${MODEL_ENV_VAR}, else {DEFAULT_DEMO_MODEL_ID})",
    )
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="default: CUDA if present, else MPS, else CPU"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="default: bfloat16 on CUDA, float16 on MPS, float32 on CPU"
    )
    parser.add_argument("--size", type=_side, help="starting output side in pixels, a multiple of 16 (default: 1024)")
    parser.add_argument(
        "--steps", type=_positive_int, default=49, help="starting number of denoising steps (default: 49)"
    )
    parser.add_argument(
        "--max-new-tokens", type=_positive_int, default=512, help="starting answer length limit (default: 512)"
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_positive_int,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest accepted upload in MB (default: {DEFAULT_MAX_UPLOAD_MB})",
    )
    parser.add_argument("--concurrency", type=_positive_int, default=1, help="model calls at once (default: 1)")
    parser.add_argument(
        "--host", help="address to listen on, 0.0.0.0 for all (default: $GRADIO_SERVER_NAME, else 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT, else the first free from 7860)")
    parser.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    return DemoSettings(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        size=args.size,
        steps=args.steps,
        max_new_tokens=args.max_new_tokens,
        max_upload_mb=args.max_upload_mb,
        concurrency=args.concurrency,
    )


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _side(value: str) -> int:
    number = _positive_int(value)
    if number % 16:
        raise argparse.ArgumentTypeError(f"expected a multiple of 16, got {value!r}")
    return number


__all__ = ["DemoSettings", "add_demo_arguments", "settings_from_args"]
