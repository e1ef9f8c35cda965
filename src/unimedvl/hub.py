# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Where models come from: the default checkpoint id and config look-up for either checkpoint layout."""

import os

from .modeling.configuration_unimedvl import UniMedVLConfig
from .modeling.original_checkpoint import check_checkpoint_folder, config_from_original, resolve_original_checkpoint


# The checkpoint the command line and the docs use when none is given (the 14B release, original layout).
DEFAULT_MODEL_ID = "General-Medical-AI/UniMedVL"


def load_config(name_or_path: str | os.PathLike, **hub_kwargs) -> UniMedVLConfig:
    """[`UniMedVLConfig`] of a checkpoint in our HF layout or in the original release layout, without building the
    model. For an original-layout Hub repo this downloads the weights too (their tensor shapes define the config)."""
    check_checkpoint_folder(name_or_path)
    original = resolve_original_checkpoint(name_or_path, **hub_kwargs)
    if original is not None:
        return config_from_original(original)
    return UniMedVLConfig.from_pretrained(name_or_path, **hub_kwargs)


__all__ = ["DEFAULT_MODEL_ID", "load_config"]
