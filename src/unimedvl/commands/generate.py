# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl generate`: text-to-image over UniMedVL's modalities.

    unimedvl generate "An axial CT slice of the head" -o ct.png        # the embedded UniMedVL-Nano model (64 px)
    unimedvl generate "A PA chest X-ray showing a right lower lobe pneumonia." -o cxr.png \
        --model General-Medical-AI/UniMedVL
    unimedvl generate "An axial CT slice of the head." -o ct.png --steps 30 --seed 7 --num-images 4

Defaults are the release's text-to-image settings (49 steps, guidance 3.0 / 1.5 in (0.4, 1], global renorm, shift 3).
Without --model (and without $UNIMEDVL_MODEL) the embedded UniMedVL-Nano model runs.
"""

import argparse
from pathlib import Path

from ..hub import MODEL_ENV_VAR
from . import CommandError
from .chat import DTYPES, _positive_int, resolve_device, resolve_dtype


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate",
        help="generate a medical image from text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", help="what to generate")
    add_generation_options(parser)
    parser.add_argument(
        "--height", type=_positive_int, help="output height, multiple of 16 (default: the model's, 1024 for the release)"
    )
    parser.add_argument("--width", type=_positive_int, help="output width, multiple of 16 (default: the model's)")
    parser.set_defaults(func=run)
    return parser


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `generate` and `edit`: model, output, sampling, device."""
    parser.add_argument("-o", "--output", required=True, help="image file to write (PNG, JPEG, TIFF, ...)")
    parser.add_argument(
        "--model",
        help=f"Hub repo id or local folder, any layout (default: ${MODEL_ENV_VAR}, else the embedded UniMedVL-Nano "
        "model)",
    )
    parser.add_argument("--steps", type=_positive_int, help="model evaluations (default: 49, the release's 50 timesteps)")
    parser.add_argument("--seed", type=int, help="seed of the noise (and of the input image's VAE sample)")
    parser.add_argument("--guidance-scale", type=float, help="text guidance scale")
    parser.add_argument("--image-guidance-scale", type=float, help="image guidance scale")
    parser.add_argument("--cfg-interval", type=float, nargs=2, metavar=("LOW", "HIGH"), help="guidance interval on t")
    parser.add_argument("--cfg-renorm-type", choices=("global", "channel", "text_channel"), help="renormalisation")
    parser.add_argument("--timestep-shift", type=float, help="schedule shift (default: 3.0)")
    parser.add_argument("--num-images", type=_positive_int, default=1, help="images to write (OUTPUT-1.png, ...)")
    parser.add_argument("--think", action="store_true", help="the release's think mode: the model plans first")
    parser.add_argument(
        "--step-cache-interval",
        type=_positive_int,
        metavar="N",
        help="step caching: run the model every N steps, extrapolate the others (faster, approximate; default: off)",
    )
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="weight dtype (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")


def output_paths(output: str, count: int) -> list[Path]:
    """`out.png` for one image, `out-1.png`, `out-2.png`, ... for several; checked before the model loads."""
    path = Path(output)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise CommandError(f"--output: {output!r} must end with one of {', '.join(IMAGE_SUFFIXES)}.")
    if not path.parent.resolve().is_dir():
        raise CommandError(f"--output: the folder {path.parent} does not exist.")
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{index}{path.suffix}") for index in range(1, count + 1)]


def check_sizes(args: argparse.Namespace) -> None:
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and value % 16:
            raise CommandError(f"--{name} must be a multiple of 16, got {value}.")


def pipeline_kwargs(args: argparse.Namespace) -> dict:
    """Sampling options given on the command line (unset ones keep the pipeline's release defaults)."""
    import torch

    kwargs = {
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "image_guidance_scale": args.image_guidance_scale,
        "cfg_interval": tuple(args.cfg_interval) if args.cfg_interval else None,
        "cfg_renorm_type": args.cfg_renorm_type,
        "timestep_shift": args.timestep_shift,
        "num_images_per_prompt": args.num_images,
        "think": args.think,
        "step_cache": {"interval": args.step_cache_interval} if args.step_cache_interval else None,
    }
    if args.seed is not None:
        kwargs["generator"] = torch.Generator().manual_seed(args.seed)
    return {key: value for key, value in kwargs.items() if value is not None}


def load_pipeline(args: argparse.Namespace):
    """The pipeline of `--model` (else of the default model, announced on stderr) on `--device` in `--dtype`."""
    from .. import UniMedVLPipeline
    from ..hub import announce_model, explain_unavailable_model

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    model_name = announce_model(args.model)
    with explain_unavailable_model(model_name):
        pipe = UniMedVLPipeline.from_pretrained(model_name, torch_dtype=dtype)
    return pipe.to(device)


def save_images(output, paths: list[Path]) -> None:
    for image, path in zip(output.images, paths):
        image.save(path)
        print(path)
    for text in output.texts or []:
        print(text)


def run(args: argparse.Namespace) -> None:
    check_sizes(args)
    paths = output_paths(args.output, args.num_images)
    pipe = load_pipeline(args)
    output = pipe(args.prompt, height=args.height, width=args.width, **pipeline_kwargs(args))
    save_images(output, paths)
