# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl eval`: benchmark UniMedVL (or a fine-tune) with the paper's task families, offline-capable.

    unimedvl eval vqa --dataset SLAKE/test.json --image-root SLAKE/imgs --batch-size 16
    unimedvl eval vqa --model ./my-finetune --dataset flaviagiammarino/vqa-rad --limit 100 --html
    unimedvl eval report --dataset ./iu_xray --report-column findings
    unimedvl eval t2i --dataset ./generation_eval.parquet --prompt-column caption --modality-column modality
    unimedvl eval i2i --dataset ./sr_eval --task super-resolution --field factor=4

Predictions are cached in OUTPUT_DIR/predictions.jsonl as they are made: run the same command again to resume an
interrupted run. Results go to OUTPUT_DIR/results.json (with a model-index block for the model card) and
OUTPUT_DIR/report.md (and report.html with --html). See evaluation/README.md for the protocol and the adapters.
"""

import argparse
import re
from pathlib import Path

from ..hub import DEFAULT_MODEL_ID
from . import CommandError
from .chat import DTYPES, _positive_int, resolve_device, resolve_dtype


# Per family: (option, role) of the column options; every family also has --id-column and --modality-column.
COLUMN_OPTIONS = {
    "vqa": [
        ("--image-column", "image"), ("--question-column", "question"), ("--answer-column", "answer"),
        ("--answer-type-column", "answer_type"), ("--options-column", "options"), ("--language-column", "language"),
    ],
    "report": [("--image-column", "image"), ("--report-column", "report"), ("--prompt-column", "prompt")],
    "t2i": [("--prompt-column", "prompt"), ("--image-column", "image")],
    "i2i": [("--image-column", "image"), ("--target-column", "target"), ("--instruction-column", "instruction")],
}  # fmt: skip
COLUMN_HELP = {
    "options": "list column of options, or per-letter columns as a template such as 'Choice {letter}'",
    "answer_type": "column saying CLOSED/OPEN per question (default: answer_type if present)",
    "instruction": "column of instructions or preset names (default: instruction/prompt/task/edit_prompt)",
}
FAMILY_HELP = {
    "vqa": "medical VQA: SLAKE, VQA-RAD, PathVQA, PMC-VQA, OmniMedVQA or any question/answer/image dataset",
    "report": "report generation (BLEU, ROUGE-L, METEOR, CIDEr)",
    "t2i": "text-to-image generation (FID per modality, BiomedCLIP score)",
    "i2i": "image-to-image generation: super-resolution, translation, staining (PSNR, SSIM)",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate on a benchmark (VQA, report generation, text-to-image, image-to-image)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    families = parser.add_subparsers(dest="family", metavar="FAMILY", required=True)
    for family, help_text in FAMILY_HELP.items():
        family_parser = families.add_parser(family, help=help_text, description=help_text)
        _add_common_options(family_parser, family)
        FAMILY_OPTIONS[family](family_parser)
        family_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.set_defaults(func=run)
    return parser


def _add_common_options(parser: argparse.ArgumentParser, family: str) -> None:
    from ..evaluation.benchmarks import BENCHMARKS

    names = [name for name, benchmark in BENCHMARKS.items() if benchmark.family == family]
    parser.add_argument(
        "--model", default=DEFAULT_MODEL_ID,
        help=f"Hub repo id or local folder, any layout (default: {DEFAULT_MODEL_ID})",
    )
    parser.add_argument("--dataset", required=True, help="Hub dataset id, local folder, or a .parquet/.jsonl/.csv file")
    parser.add_argument(
        "--benchmark", default="auto",
        help=f"dataset adapter: {', '.join(names)}; auto (default) recognises the benchmark in the dataset name",
    )  # fmt: skip
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--config", help="dataset configuration name")
    parser.add_argument("--streaming", action="store_true", help="stream the split instead of downloading it first")
    parser.add_argument("--image-root", help="folder that relative image paths start from (default: the local dataset)")
    parser.add_argument("--limit", type=_positive_int, help="evaluate only the first N examples")
    batch_size = 4 if family in ("t2i", "i2i") else 8
    parser.add_argument(
        "--batch-size", type=_positive_int, default=batch_size, help=f"examples per model call (default: {batch_size})"
    )
    parser.add_argument("-o", "--output-dir", help="where predictions and results go (default: eval-results/...)")
    parser.add_argument("--overwrite", action="store_true", help="discard cached predictions instead of resuming")
    parser.add_argument("--html", action="store_true", help="also write report.html with embedded images")
    parser.add_argument("--id-column", help="column of stable example ids (default: id/qid/...; else the row number)")
    parser.add_argument("--modality-column", help="column of modality labels, for per-modality tables")
    for option, role in COLUMN_OPTIONS[family]:
        parser.add_argument(option, help=COLUMN_HELP.get(role, f"column of the {role.replace('_', ' ')}"))
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="weight dtype (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")


def _add_vqa_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--language", default="en", help="keep questions in this language when the dataset has a language column "
        "(SLAKE q_lang); 'all' keeps every one (default: en)",
    )  # fmt: skip
    parser.add_argument(
        "--prompt-template", help="prompt with {question} and {options} placeholders (default: the question, or the "
        "question, lettered options and 'Answer with the option's letter from the given choices directly.')",
    )  # fmt: skip
    parser.add_argument("--max-new-tokens", type=_positive_int, default=64, help="longest answer (default: 64)")


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    from ..evaluation.runners import DEFAULT_REPORT_PROMPT

    parser.add_argument(
        "--prompt", default=DEFAULT_REPORT_PROMPT, help=f"instruction (default: {DEFAULT_REPORT_PROMPT!r})"
    )
    parser.add_argument("--max-new-tokens", type=_positive_int, default=512, help="longest report (default: 512)")
    parser.add_argument("--no-meteor", dest="meteor", action="store_false", help="skip METEOR (needs Java)")


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=_positive_int, help="model evaluations (default: the pipeline's 49)")
    parser.add_argument("--guidance-scale", type=float, help="text guidance scale (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0, help="example i is generated with seed SEED + i (default: 0)")


def _add_t2i_options(parser: argparse.ArgumentParser) -> None:
    from ..evaluation.features import FEATURE_EXTRACTORS

    _add_generation_options(parser)
    parser.add_argument("--height", type=_positive_int, default=1024, help="multiple of 16 (default: 1024)")
    parser.add_argument("--width", type=_positive_int, default=1024, help="multiple of 16 (default: 1024)")
    parser.add_argument(
        "--feature-extractor", choices=FEATURE_EXTRACTORS, default="inception",
        help="FID features: inception (default; pytorch-fid and its weights), biomedclip, or pixels (a smoke test "
        "only, never for reporting)",
    )  # fmt: skip
    parser.add_argument("--no-clip-score", dest="clip_score", action="store_false", help="skip the BiomedCLIP score")


def _add_i2i_options(parser: argparse.ArgumentParser) -> None:
    from ..pipelines.presets import TASK_PRESETS

    _add_generation_options(parser)
    parser.add_argument("--task", choices=sorted(TASK_PRESETS), help="preset for every example (default: per row)")
    parser.add_argument("--field", action="append", default=[], metavar="KEY=VALUE", help="fill a preset's template")
    parser.add_argument("--image-guidance-scale", type=float, help="image guidance scale (default: the pipeline's)")
    parser.add_argument(
        "--color-mode", choices=("auto", "gray", "rgb"), default="auto",
        help="score in grey levels or RGB (default: auto = grey when the target is greyscale)",
    )  # fmt: skip


FAMILY_OPTIONS = {
    "vqa": _add_vqa_options,
    "report": _add_report_options,
    "t2i": _add_t2i_options,
    "i2i": _add_i2i_options,
}


def run(args: argparse.Namespace) -> None:
    from .. import evaluation

    family = args.family
    if family == "t2i":
        for name in ("height", "width"):
            if getattr(args, name) % 16:
                raise CommandError(f"--{name} must be a multiple of 16, got {getattr(args, name)}.")
    device = resolve_device(args.device)
    output_dir = Path(args.output_dir or default_output_dir(family, args.dataset, args.split))
    common = {
        "output_dir": output_dir, "benchmark": args.benchmark, "split": args.split, "config": args.config,
        "limit": args.limit, "batch_size": args.batch_size, "streaming": args.streaming,
        "image_root": args.image_root, "columns": column_overrides(args), "device": device,
        "dtype": resolve_dtype(args.dtype, device), "overwrite": args.overwrite, "html": args.html,
    }  # fmt: skip
    if family == "vqa":
        language = None if args.language == "all" else args.language
        results = evaluation.evaluate_vqa(
            args.model, args.dataset, language=language, prompt_template=args.prompt_template,
            max_new_tokens=args.max_new_tokens, **common,
        )  # fmt: skip
    elif family == "report":
        results = evaluation.evaluate_report(
            args.model, args.dataset, prompt=args.prompt, max_new_tokens=args.max_new_tokens, meteor=args.meteor,
            **common,
        )  # fmt: skip
    elif family == "t2i":
        results = evaluation.evaluate_text_to_image(
            args.model, args.dataset, height=args.height, width=args.width, num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale, seed=args.seed, feature_extractor=args.feature_extractor,
            clip_score=args.clip_score, **common,
        )  # fmt: skip
    else:
        results = evaluation.evaluate_image_to_image(
            args.model, args.dataset, task=args.task, task_fields=parse_fields(args.field) or None,
            num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
            image_guidance_scale=args.image_guidance_scale, seed=args.seed, color_mode=args.color_mode, **common,
        )  # fmt: skip
    print_summary(results, output_dir)


def column_overrides(args: argparse.Namespace) -> dict:
    """Role -> column given on the command line."""
    options = [*COLUMN_OPTIONS[args.family], ("--id-column", "id"), ("--modality-column", "modality")]
    overrides = {role: getattr(args, option[2:].replace("-", "_")) for option, role in options}
    return {role: column for role, column in overrides.items() if column}


def parse_fields(fields: list[str]) -> dict:
    values = {}
    for field in fields:
        key, separator, value = field.partition("=")
        if not separator or not key:
            raise CommandError(f"--field expects KEY=VALUE, got {field!r}.")
        values[key] = value
    return values


def default_output_dir(family: str, dataset: str, split: str) -> Path:
    """`eval-results/<family>-<dataset name>-<split>`: the same command resumes into the same folder."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(dataset.rstrip("/\\")).name) or "dataset"
    return Path("eval-results") / f"{family}-{name}-{split}"


def print_summary(results: dict, output_dir: Path) -> None:
    """The headline metrics, then where the files are."""
    print(f"{results['benchmark']} ({results['split']}), {results['num_examples']} examples, model {results['model']}")
    for entry in results["model_index"]:
        for metric in entry["metrics"]:
            print(f"  {metric['name']}: {metric['value']}")
    for key, reason in results["unavailable"].items():
        print(f"  {key}: not computed ({reason})")
    for modality, values in results["per_modality"].items():
        shown = [
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in values.items()
        ]
        print(f"  [{modality}] {', '.join(shown)}")
    reports = [str(output_dir / name) for name in ("report.md", "report.html") if (output_dir / name).is_file()]
    print(f"results: {output_dir / 'results.json'}; report: {', '.join(reports)}")
