# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl edit`: image-conditioned generation (staining, super-resolution, modality translation, counterfactuals,
or any free instruction).

    unimedvl edit --image he_patch.png --task staining -o ihc.png
    unimedvl edit --image t2.dcm --task translate --field target=FLAIR -o flair.png
    unimedvl edit --image cxr.dcm --task "Remove the pleural effusion." -o counterfactual.png

`--task` is a preset name (its instruction and settings; only `staining` is the release's own prompt) or, otherwise,
the instruction itself. The output keeps the input's aspect ratio (longest side up to 1024) unless --height/--width
are given.

Without --model (and without $UNIMEDVL_MODEL) the embedded UniMedVL-Nano model runs (64 px); it learned two
instructions only: CT window changes ("Show this CT slice in a bone window.") and 2x super-resolution ("Increase the
resolution of this image.").
"""

import argparse

from ..pipelines.presets import TASK_PRESETS
from . import CommandError
from .chat import _positive_int, _window, load_images
from .generate import add_generation_options, check_sizes, load_pipeline, output_paths, pipeline_kwargs, save_images


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "edit",
        help="transform a medical image with a task preset or an instruction",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--image", required=True, help="input image: PNG/JPEG/TIFF, DICOM or NIfTI")
    parser.add_argument(
        "--task", required=True, help=f"a preset ({', '.join(TASK_PRESETS)}) or a free instruction in quotes"
    )
    parser.add_argument(
        "--field", action="append", default=[], metavar="KEY=VALUE", help="fill a preset's template, e.g. target=FLAIR"
    )
    parser.add_argument(
        "--describe", action=argparse.BooleanOptionalAction, default=None,
        help="run the release's understanding pass first (default: on for staining only)",
    )  # fmt: skip
    add_generation_options(parser)
    parser.add_argument("--height", type=_positive_int, help="output height, multiple of 16")
    parser.add_argument("--width", type=_positive_int, help="output width, multiple of 16")
    parser.add_argument("--frame-index", type=int, help="frame of multi-frame DICOMs (default: the middle frame)")
    parser.add_argument("--slice-index", type=int, help="slice of NIfTI volumes (default: the middle slice)")
    parser.add_argument("--window", type=_window, help="display window of CT/MR data: a preset or CENTER,WIDTH")
    parser.set_defaults(func=run)
    return parser


def task_arguments(task: str, fields: list[str]) -> dict:
    """`--task` / `--field` → pipeline arguments: a preset (`task`, `task_fields`) or a free instruction (`prompt`)."""
    if task not in TASK_PRESETS:
        if fields:
            raise CommandError(f"--field only applies to presets ({', '.join(TASK_PRESETS)}), not to an instruction.")
        if not task.strip():
            raise CommandError("--task: give a preset name or an instruction.")
        return {"prompt": task}
    values = {}
    for field in fields:
        key, separator, value = field.partition("=")
        if not separator or not key:
            raise CommandError(f"--field expects KEY=VALUE, got {field!r}.")
        values[key] = value
    return {"prompt": None, "task": task, "task_fields": values or None}


def run(args: argparse.Namespace) -> None:
    check_sizes(args)
    paths = output_paths(args.output, args.num_images)
    task = task_arguments(args.task, args.field)
    image = load_images([args.image], args.frame_index, args.slice_index, args.window)[0]
    pipe = load_pipeline(args)
    output = pipe(
        image=image, height=args.height, width=args.width, describe_image=args.describe, **task,
        **pipeline_kwargs(args),
    )  # fmt: skip
    save_images(output, paths)
