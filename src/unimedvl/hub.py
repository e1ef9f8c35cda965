# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Where models come from: the released checkpoint id, the embedded UniMedVL-Nano model (the default of the command
line and the demo), and config look-up for either checkpoint layout."""

import os
import sys
from contextlib import contextmanager
from importlib.resources import files

from .modeling.configuration_unimedvl import UniMedVLConfig
from .modeling.original_checkpoint import check_checkpoint_folder, resolve_original_checkpoint


# The checkpoint the command line and the docs use when none is given (the 14B release, original layout).
DEFAULT_MODEL_ID = "General-Medical-AI/UniMedVL"

# UniMedVL-Nano, trained by `train/nano.py` and shipped inside the package (`unimedvl/nano/`): runs anywhere, offline.
NANO_MODEL_PATH = str(files("unimedvl") / "nano")
NANO_MODEL_NOTICE = (
    "Using the embedded UniMedVL-Nano model (a small research demo model, not the 14B release); pass --model "
    f"{DEFAULT_MODEL_ID} for the released model."
)

# The model the command line (`chat`, `generate`, `edit`) and the demo / Space use: `--model`, else this environment
# variable, else the embedded nano model.
MODEL_ENV_VAR = "UNIMEDVL_MODEL"
DEFAULT_DEMO_MODEL_ID = NANO_MODEL_PATH


def resolve_model(name_or_path: str | os.PathLike | None = None, default: str = DEFAULT_DEMO_MODEL_ID) -> str:
    """The model to use: `name_or_path` when given, else `$UNIMEDVL_MODEL` when set and non-empty, else `default`."""
    if name_or_path:
        return str(name_or_path)
    return os.environ.get(MODEL_ENV_VAR, "").strip() or default


def announce_model(name_or_path: str | os.PathLike | None = None, stream=None) -> str:
    """[`resolve_model`], telling `stream` (default: stderr) in one line which model runs when it was not given
    explicitly: the embedded nano model's notice, or the model named by `$UNIMEDVL_MODEL`."""
    model = resolve_model(name_or_path)
    stream = stream if stream is not None else sys.stderr
    if not name_or_path:
        print(NANO_MODEL_NOTICE if model == NANO_MODEL_PATH else f"Using {model} (from ${MODEL_ENV_VAR}).", file=stream)
    return model


@contextmanager
def explain_unavailable_model(name_or_path: str | os.PathLike):
    """Turns a failure to fetch a model that is not a local folder (offline, unknown repo, no access) into an
    `OSError` that names it and points to the embedded model; the model is never swapped silently."""
    try:
        yield
    except OSError as error:
        if os.path.exists(name_or_path):
            raise
        raise OSError(
            f"could not load the model {str(name_or_path)!r} from the Hugging Face Hub ({error}). Without network "
            f"access, run the embedded UniMedVL-Nano model instead: leave out --model (and unset ${MODEL_ENV_VAR})."
        ) from error


def load_config(name_or_path: str | os.PathLike, **hub_kwargs) -> UniMedVLConfig:
    """[`UniMedVLConfig`] of a checkpoint in our HF layout or in the original release layout, without building the
    model. For an original-layout Hub repo this downloads the weights too (their tensor shapes define the config)."""
    check_checkpoint_folder(name_or_path)
    original = resolve_original_checkpoint(name_or_path, **hub_kwargs)
    if original is not None:
        return UniMedVLConfig.from_original(original)
    return UniMedVLConfig.from_pretrained(name_or_path, **hub_kwargs)


__all__ = [
    "DEFAULT_DEMO_MODEL_ID", "DEFAULT_MODEL_ID", "MODEL_ENV_VAR", "NANO_MODEL_NOTICE", "NANO_MODEL_PATH",
    "announce_model", "explain_unavailable_model", "load_config", "resolve_model",
]
