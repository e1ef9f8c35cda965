# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl card CHECKPOINT`: write the model card (CHECKPOINT/README.md) and the dataset card of the data schema.

    unimedvl card ./UniMedVL-hf --repo-id me/UniMedVL-hf
    unimedvl card ./UniMedVL-hf --repo-id me/UniMedVL-hf --eval-results eval/*/results.json --overwrite

The model card states intended and out-of-scope use, limitations, training data and curriculum, the paper's reported
numbers and (with --eval-results, the `results.json` of `unimedvl eval` runs) this project's measurements as
`model-index`, how to load the model with
transformers / diffusers / PEFT, the licence and the citation. The dataset card goes to a folder next to the
checkpoint (default: CHECKPOINT-dataset/README.md), ready to upload as a dataset repository.
"""

import argparse

from . import CommandError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "card",
        help="write the model card and dataset card of a converted checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="the checkpoint folder (from `unimedvl convert`)")
    parser.add_argument("--repo-id", help="Hub id the card's code loads (default: the folder's name)")
    parser.add_argument(
        "--eval-results",
        nargs="+",
        metavar="JSON",
        help="results.json file(s) written by `unimedvl eval` (they become the card's model-index)",
    )
    parser.add_argument(
        "--base-model",
        default="General-Medical-AI/UniMedVL",
        help="where the weights come from, or 'none' (default: General-Medical-AI/UniMedVL)",
    )
    parser.add_argument("--license", default="apache-2.0", help="licence id of the card metadata (default: apache-2.0)")
    parser.add_argument(
        "--dataset-repo-id", help="Hub dataset documented by the dataset card, linked from the model card"
    )
    parser.add_argument("--dataset-dir", help="folder of the dataset card (default: CHECKPOINT-dataset next to it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing cards")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from ..model_cards import write_cards

    try:
        model_card, dataset_card = write_cards(
            args.checkpoint,
            repo_id=args.repo_id,
            eval_results_path=args.eval_results,
            dataset_dir=args.dataset_dir,
            overwrite=args.overwrite,
            base_model=None if args.base_model.lower() == "none" else args.base_model,
            license=args.license,
            dataset_repo_id=args.dataset_repo_id,
        )
    except FileExistsError as error:
        raise CommandError(str(error).replace("overwrite=True (--overwrite)", "--overwrite")) from None
    print(f"Wrote {model_card}")
    print(f"Wrote {dataset_card}")
