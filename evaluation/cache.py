# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The output folder of a run: cached predictions (`predictions.jsonl`) and the settings they were made with
(`run.json`), so that an interrupted run resumes where it stopped and a changed run does not mix with the old one.
"""

import json
import shutil
from pathlib import Path


PREDICTIONS_FILE = "predictions.jsonl"
SETTINGS_FILE = "run.json"
# Everything a run writes, removed by `overwrite=True`.
RUN_OUTPUTS = (PREDICTIONS_FILE, SETTINGS_FILE, "results.json", "report.md", "report.html", "images", "references")


class CacheMismatchError(ValueError):
    """The output folder holds predictions made with other settings."""


class CorruptCacheError(ValueError):
    """A line of `predictions.jsonl` other than the last is not a JSON object with an `id`."""


class PredictionCache:
    """Append-only JSON-lines store of one record per example, keyed by the record's `id`.

    Records are flushed to disk after every batch. A last line cut short by an interruption is dropped (and removed
    from the file) when the cache is opened, so that example is predicted again.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        kept = 0  # bytes of complete, valid lines
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                kept += len(line) + 1
                continue
            try:
                record = json.loads(line)
                record_id = record["id"]
            except (ValueError, KeyError, TypeError):
                if number == len(lines):  # the unfinished last line of an interrupted run
                    break
                raise CorruptCacheError(
                    f"{self.path}, line {number}: not a JSON object with an 'id'; delete the file or pass --overwrite."
                ) from None
            self.records[str(record_id)] = record
            kept += len(line) + 1
        if kept < len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(kept)
        elif data and not data.endswith(b"\n"):  # a complete record whose newline was not written yet
            with self.path.open("ab") as handle:
                handle.write(b"\n")

    def __contains__(self, example_id: str) -> bool:
        return example_id in self.records

    def __getitem__(self, example_id: str) -> dict:
        return self.records[example_id]

    def __len__(self) -> int:
        return len(self.records)

    def extend(self, records: list[dict]) -> None:
        """Append `records` (each with an `id`) to the file and flush."""
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.records[str(record["id"])] = record


def prepare_output_dir(output_dir: str | Path, settings: dict, overwrite: bool = False) -> PredictionCache:
    """Create `output_dir`, check (or record) the run settings, and open its prediction cache.

    `settings` are the choices that change predictions (model, dataset, prompts, sampling, ...); not `limit` or the
    batch size, so a run can be resumed or extended with a larger limit.

    Raises:
        CacheMismatchError: the folder holds predictions made with other settings (and `overwrite` is false).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in RUN_OUTPUTS:
            target = output_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    settings = json.loads(json.dumps(settings))  # as read back from disk (tuples -> lists, ...)
    settings_path = output_dir / SETTINGS_FILE
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        changed = sorted(key for key in previous.keys() | settings.keys() if previous.get(key) != settings.get(key))
        if changed:
            details = "; ".join(f"{key}: {previous.get(key)!r} -> {settings.get(key)!r}" for key in changed)
            raise CacheMismatchError(
                f"{output_dir} holds predictions made with other settings ({details}). Use another --output-dir, or "
                "--overwrite to discard them."
            )
    else:
        settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    return PredictionCache(output_dir / PREDICTIONS_FILE)


__all__ = ["CacheMismatchError", "CorruptCacheError", "PredictionCache", "prepare_output_dir"]
