# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Atomic training checkpoints: everything is written into `checkpoint-<step>.tmp/`, and the folder is renamed to
`checkpoint-<step>/` only once complete (`trainer_state.json` is its last file). A crash mid-write leaves a `.tmp`
folder that is ignored and later removed, and the previous checkpoint intact.

A checkpoint folder holds Accelerate's state (model, optimizer, LR scheduler, per-process RNG states), the EMA
weights of each process (`ema-rank<r>.safetensors`), the data position of each process (`data_state-rank<r>.json`)
and `trainer_state.json` (step, world size, accumulation steps).
"""

import json
import os
import re
import shutil
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"


class CheckpointError(ValueError):
    """A resume request that cannot be satisfied."""


def checkpoint_dir(output_dir: str | os.PathLike, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def temporary_dir(output_dir: str | os.PathLike, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}.tmp"


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / TRAINER_STATE_NAME).is_file()


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir() and is_complete_checkpoint(child):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(request: str, output_dir: str | os.PathLike) -> Path:
    """`"latest"` → the highest complete checkpoint of `output_dir`; otherwise a checkpoint folder path.

    Raises:
        `CheckpointError`: no complete checkpoint to resume from (the message lists what was found instead).
    """
    if request == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            partial = sorted(p.name for p in Path(output_dir).glob("checkpoint-*")) if Path(output_dir).is_dir() else []
            raise CheckpointError(
                f"resume_from_checkpoint='latest' but {output_dir} holds no complete checkpoint"
                + (f" (only incomplete: {partial})." if partial else ".")
            )
        return checkpoints[-1]
    path = Path(request)
    if not path.is_dir():
        raise CheckpointError(f"resume_from_checkpoint={request!r}: no such folder.")
    if not is_complete_checkpoint(path):
        raise CheckpointError(f"resume_from_checkpoint={request!r} is not a complete checkpoint (no "
                              f"{TRAINER_STATE_NAME}; an interrupted write leaves a '.tmp' folder).")
    return path


def read_trainer_state(path: str | os.PathLike) -> dict:
    return json.loads((Path(path) / TRAINER_STATE_NAME).read_text())


def commit_checkpoint(temporary: Path, final: Path, trainer_state: dict):
    """Writes the completion marker, then publishes the folder with one atomic rename."""
    (temporary / TRAINER_STATE_NAME).write_text(json.dumps(trainer_state, indent=2))
    if final.exists():  # a checkpoint of the same step from an earlier, abandoned run
        shutil.rmtree(final)
    os.replace(temporary, final)


def remove_stale_temporaries(output_dir: str | os.PathLike):
    for path in Path(output_dir).glob("checkpoint-*.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def prune_checkpoints(output_dir: str | os.PathLike, keep: int | None):
    """Deletes the oldest complete checkpoints beyond `keep` (`None` keeps all)."""
    if keep is None:
        return
    for path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "CheckpointError",
    "checkpoint_dir",
    "commit_checkpoint",
    "is_complete_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "read_trainer_state",
    "remove_stale_temporaries",
    "resolve_checkpoint",
    "temporary_dir",
]
