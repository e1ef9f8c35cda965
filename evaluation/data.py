# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Reading evaluation datasets: `datasets.load_dataset` over Hub ids, local folders and single files, and the
selection of examples (stable ids, language filter, `limit`) that every runner iterates.
"""

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .benchmarks import read_options


# Single data files are read by the `datasets` builder of their format.
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


class DuplicateExampleIdError(ValueError):
    """Two examples of the selection share an id, so cached predictions could not be told apart."""


class ImageNotFoundError(FileNotFoundError):
    """An image path of the dataset does not exist under the image root."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where the examples come from and which of them to evaluate.

    Attributes:
        path: Hub dataset id, local folder (parquet / JSON lines / CSV / imagefolder) or single data file.
        split: split to read, e.g. `"test"`.
        config: dataset configuration name, if the dataset has several.
        streaming: stream rows instead of downloading and preparing the whole split first.
        image_root: folder that relative image paths in the dataset start from (default: the local dataset's folder).
        columns: role -> column overrides (see `Benchmark.resolve_columns`).
        limit: evaluate only the first `limit` examples (after filtering).
        language: keep rows whose language column equals this (SLAKE `q_lang`); `None` keeps every row.
    """

    path: str
    split: str = "test"
    config: str | None = None
    streaming: bool = False
    image_root: str | None = None
    columns: dict | None = None
    limit: int | None = None
    language: str | None = "en"

    def default_image_root(self) -> Path | None:
        """The folder relative image paths start from: `image_root`, else the local dataset's folder."""
        if self.image_root is not None:
            return Path(self.image_root)
        local = Path(self.path)
        if local.is_dir():
            return local
        return local.parent if local.is_file() else None


def load_rows(spec: DatasetSpec):
    """`datasets.load_dataset` for the split of `spec` (a `Dataset`, or an `IterableDataset` when streaming).

    Image columns are left undecoded (`{"bytes", "path"}` dicts) so that resuming a run does not decode images whose
    predictions are cached.
    """
    import datasets

    path = Path(spec.path)
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"--dataset {spec.path}: unsupported file type; use one of {', '.join(FILE_BUILDERS)}.")
        rows = datasets.load_dataset(
            builder, data_files={spec.split: str(path)}, split=spec.split, streaming=spec.streaming
        )
    else:
        rows = datasets.load_dataset(spec.path, spec.config, split=spec.split, streaming=spec.streaming)
    for name, feature in (rows.features or {}).items():
        if isinstance(feature, datasets.Image) and feature.decode:
            rows = rows.cast_column(name, datasets.Image(decode=False))
    return rows


def count_rows(rows) -> int | None:
    """Number of rows of a prepared split; `None` for a stream."""
    try:
        return len(rows)
    except TypeError:
        return None


def iter_examples(rows, columns: dict, spec: DatasetSpec) -> Iterator[dict]:
    """Yield the selected examples of `rows` as dicts of role -> value, plus `id` and `index`.

    `columns` maps roles to dataset columns (from [`Benchmark.resolve_columns`]).

    `index` is the row's position in the split (before filtering), and `id` the dataset's id column when it has one,
    else `"<split>-<index>"`; both are stable across runs. Rows in another language than `spec.language` are skipped
    when the benchmark has a language column. `options` becomes a list (or `None`), and `image` stays the raw cell
    value to pass to [`open_images`].
    """
    seen = set()
    for index, row in enumerate(rows):
        language = columns.get("language")
        if spec.language and language and str(row.get(language)).lower() != spec.language.lower():
            continue
        example = {role: row.get(column) for role, column in columns.items() if column and role != "options"}
        if "options" in columns:
            example["options"] = read_options(row, columns["options"])
        example_id = str(example["id"]) if example.get("id") is not None else f"{spec.split}-{index}"
        if example_id in seen:
            raise DuplicateExampleIdError(
                f"Example id {example_id!r} (column {columns['id']!r}) occurs twice in the selection; pass "
                "--id-column with a unique column."
            )
        seen.add(example_id)
        yield example | {"id": example_id, "index": index}
        if spec.limit is not None and len(seen) >= spec.limit:
            return


def open_images(value, image_root: Path | None) -> list:
    """Image value(s) of a dataset cell -> list of 8-bit RGB PIL images (via `unimedvl.load_image`).

    Accepts PIL images, arrays, `datasets` image dicts (`{"bytes", "path"}`), file paths (PNG, JPEG, DICOM, NIfTI, ...;
    relative ones are joined to `image_root`) and lists of these.
    """
    values = value if isinstance(value, (list, tuple)) else [value]
    return [open_image(item, image_root) for item in values]


def open_image(value, image_root: Path | None):
    """One image value of a dataset cell -> 8-bit RGB PIL image (see [`open_images`])."""
    from PIL import Image

    from ..modeling.medical_io import load_image

    if isinstance(value, dict):
        if value.get("bytes"):
            return load_image(Image.open(io.BytesIO(value["bytes"])))
        value = value.get("path")
    if isinstance(value, (str, os.PathLike)):
        return load_image(resolve_path(value, image_root))
    if value is None:
        raise ValueError("An example has no image.")
    return load_image(value)


def resolve_path(value, image_root: Path | None) -> Path:
    """A dataset's image path, joined to `image_root` when relative, checked to exist."""
    path = Path(value)
    if not path.is_absolute() and image_root is not None:
        path = image_root / path
    if not path.is_file():
        hint = f"under the image root {image_root}" if image_root is not None else "(the dataset gives no folder)"
        raise ImageNotFoundError(
            f"Image {str(value)!r} not found {hint}; pass --image-root, the folder the dataset's image paths "
            "start from."
        )
    return path


__all__ = [
    "DatasetSpec",
    "DuplicateExampleIdError",
    "ImageNotFoundError",
    "count_rows",
    "iter_examples",
    "load_rows",
    "open_image",
    "open_images",
    "resolve_path",
]
