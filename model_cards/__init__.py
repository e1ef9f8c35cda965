# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Model and dataset cards for UniMedVL checkpoints (`unimedvl card` writes them); see [`cards`]."""

from .cards import (
    CITATION,
    PAPER_RESULTS,
    REQUIRED_MODEL_CARD_SECTIONS,
    EvalReport,
    EvalResultsError,
    build_dataset_card,
    build_model_card,
    inspect_checkpoint,
    load_eval_results,
    parse_eval_results,
    write_cards,
)


__all__ = [
    "CITATION",
    "PAPER_RESULTS",
    "REQUIRED_MODEL_CARD_SECTIONS",
    "EvalReport",
    "EvalResultsError",
    "build_dataset_card",
    "build_model_card",
    "inspect_checkpoint",
    "load_eval_results",
    "parse_eval_results",
    "write_cards",
]
