# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Readers: any `datasets` source (Hub id, local parquet / jsonl / json / csv / imagefolder / webdataset, streamed or
not) mapped into the sample schema of [`schema`], including the UniMed-5M formats as published by their authors.

```python
stream = load_training_dataset(DatasetArguments(path="data/dicom_qa", format="vqa", streaming=True))
next(iter(stream))  # {"messages": [...], "images": [...], "output_images": [], "task": "understanding", ...}
```

Images are never decoded here (`datasets` image decoding is turned off): the packer decodes them, so a corrupt image is
counted and skipped (or stops the run) under `data.on_bad_image` instead of crashing inside `datasets`.
"""

import json
import os
import random
from pathlib import Path

import datasets

from .config import DatasetArguments
from .schema import SampleSchemaError, normalize_sample

ROW_INDEX_COLUMN = "__row_index__"

_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".tar": "webdataset"}

# Format → (column role → default column name).
_DEFAULT_COLUMNS = {
    "messages": {"messages": "messages", "images": "images", "output_images": "output_images", "task": "task"},
    "caption": {"image": "image", "text": "text"},
    "vqa": {"image": "image", "question": "question", "answer": "answer"},
    "unimed5m": {"message": "message", "input_img": "input_img", "output_img": "output_img"},
    "unimed5m_t2i": {"image": "image", "captions": "captions"},
}
_FORMAT_TASKS = {"caption": "generation", "vqa": "understanding", "unimed5m_t2i": "generation"}


def open_dataset(spec: DatasetArguments) -> datasets.IterableDataset:
    """Opens a source as an `IterableDataset` of raw rows with image decoding off.

    A local file is read with the builder of its suffix (`.parquet`, `.jsonl`/`.json`, `.csv`, `.tar` = webdataset);
    a local folder or a Hub id goes through `datasets.load_dataset`'s own format detection (parquet, json,
    imagefolder, webdataset, ...). Map-style sources get a `__row_index__` column so errors can name the row.
    """
    kwargs = {"split": spec.split, "streaming": spec.streaming}
    if spec.revision is not None:
        kwargs["revision"] = spec.revision
    suffix = Path(spec.path).suffix.lower()
    if os.path.isfile(spec.path) and suffix in _FILE_BUILDERS:
        dataset = datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=spec.path, **kwargs)
    else:
        dataset = datasets.load_dataset(spec.path, spec.name, data_files=spec.data_files, data_dir=spec.data_dir,
                                        **kwargs)
    if isinstance(dataset, datasets.Dataset):
        dataset = dataset.add_column(ROW_INDEX_COLUMN, list(range(len(dataset)))).to_iterable_dataset()
    if dataset.features is not None:
        features = _without_image_decoding(dataset.features)
        if features != dataset.features:
            dataset = dataset.cast(features)
    return dataset


def _without_image_decoding(feature):
    """The same features with every `Image` (also inside lists and structs) set to `decode=False`."""
    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(feature, dict):
        return type(feature)({key: _without_image_decoding(value) for key, value in feature.items()})
    if isinstance(feature, datasets.List):
        return datasets.List(_without_image_decoding(feature.feature), length=feature.length)
    if isinstance(feature, datasets.LargeList):
        return datasets.LargeList(_without_image_decoding(feature.feature))
    return feature


def _resolve_paths(images: list, image_root: str | None) -> list:
    """Relative paths (plain or in `{"path": ...}` mappings without bytes) are joined to `image_root`."""
    if image_root is None:
        return images

    def resolve(image):
        if isinstance(image, str) and not os.path.isabs(image):
            return os.path.join(image_root, image)
        if isinstance(image, dict) and image.get("bytes") is None and isinstance(image.get("path"), str):
            return resolve(image["path"])
        return image

    return [resolve(image) for image in images]


def _column(row: dict, columns: dict, role: str, where: str, required: bool = True):
    name = columns[role]
    if name not in row:
        if not required:
            return None
        raise SampleSchemaError(f"{where}: column {name!r} (the {role!r} column) is missing; columns present: "
                                f"{sorted(k for k in row if k != ROW_INDEX_COLUMN)}. Map it with `columns: "
                                f"{{{role}: <name>}}`.")
    return row[name]


def _split_image_placeholders(text: str) -> list[dict]:
    """`"<image>\\nWhat is shown?"` → `[{"type": "image"}, {"type": "text", "text": "What is shown?"}]`."""
    items = []
    for position, piece in enumerate(text.split("<image>")):
        if position:
            items.append({"type": "image"})
        if piece.strip():
            items.append({"type": "text", "text": piece.strip()})
    return items


def unimed5m_to_messages(row: dict, columns: dict, where: str) -> dict:
    """The authors' UniMed-5M JSONL row (`message` turns `{"from": "human"|"gpt", "value"}` with `<image>`
    placeholders, `input_img` / `output_img` lists of `{"path", "height", "width"}`) → schema row.

    `<image>` in human turns places input images. `<image>` in gpt turns places output images; output images not
    placed that way are appended after the text of the last gpt turn (the editing layout: answer, then image).
    """
    turns = _column(row, columns, "message", where)
    input_images = [image["path"] if isinstance(image, dict) else image
                    for image in (_column(row, columns, "input_img", where, required=False) or [])]
    output_images = [image["path"] if isinstance(image, dict) else image
                     for image in (_column(row, columns, "output_img", where, required=False) or [])]
    messages = []
    for turn_index, turn in enumerate(turns or []):
        speaker = turn.get("from") if isinstance(turn, dict) else None
        if speaker not in ("human", "gpt"):
            raise SampleSchemaError(f"{where}: message[{turn_index}] must have 'from' = 'human' or 'gpt', got "
                                    f"{turn!r}.")
        role = "user" if speaker == "human" else "assistant"
        messages.append({"role": role, "content": _split_image_placeholders(str(turn.get("value", "")))})
    placed = sum(item["type"] == "image" for m in messages if m["role"] == "assistant" for item in m["content"])
    assistant_turns = [m for m in messages if m["role"] == "assistant"]
    if placed < len(output_images):
        if not assistant_turns:
            messages.append({"role": "assistant", "content": []})
            assistant_turns = messages[-1:]
        assistant_turns[-1]["content"].extend({"type": "image"} for _ in range(len(output_images) - placed))
    metadata = [str(row[key]) for key in ("dataset", "main_task_type", "sub_task_type") if row.get(key)]
    sample = {"messages": messages, "images": input_images, "output_images": output_images}
    if metadata:
        sample["source"] = "/".join(metadata)
    return sample


def _row_to_schema(row: dict, spec: DatasetArguments, columns: dict, where: str) -> dict:
    fmt = spec.format
    if fmt == "messages":
        sample = {role: row[name] for role, name in columns.items() if name in row}
        if "messages" not in sample:
            _column(row, columns, "messages", where)
        sample.update({key: row[key] for key in ("modality", "source", "license", "group_id") if key in row})
    elif fmt == "caption":
        text = _column(row, columns, "text", where)
        sample = {"messages": [{"role": "user", "content": str(text)}, {"role": "assistant", "content": [
            {"type": "image"}]}], "output_images": [_column(row, columns, "image", where)]}
    elif fmt == "vqa":
        sample = {"messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": str(_column(row, columns,
                                                                                             "question", where))}]},
            {"role": "assistant", "content": str(_column(row, columns, "answer", where))},
        ], "images": [_column(row, columns, "image", where)]}
    elif fmt == "unimed5m":
        sample = unimed5m_to_messages(row, columns, where)
    else:  # unimed5m_t2i: one caption of the JSON dict, chosen deterministically per row
        captions = _column(row, columns, "captions", where)
        captions = json.loads(captions) if isinstance(captions, str) else captions
        texts = [str(text) for text in (captions.values() if isinstance(captions, dict) else captions) if text]
        caption = random.Random(f"{spec.path}:{row.get(ROW_INDEX_COLUMN, where)}").choice(texts) if texts else " "
        sample = {"messages": [{"role": "user", "content": caption}, {"role": "assistant", "content": [
            {"type": "image"}]}], "output_images": [_column(row, columns, "image", where)]}
    for key in ("images", "output_images"):
        if key in sample:
            sample[key] = _resolve_paths(list(sample[key] or []), spec.image_root)
    if spec.task is not None:
        sample["task"] = spec.task
    return normalize_sample(sample, where)


def schema_mapper(spec: DatasetArguments, label: str):
    """The row → schema function of a source, for `IterableDataset.map(..., with_indices=True)`."""
    unknown = sorted(set(spec.columns) - set(_DEFAULT_COLUMNS[spec.format]))
    if unknown:
        raise SampleSchemaError(f"dataset {label!r}: unknown column role(s) {unknown} for format {spec.format!r}; "
                                f"valid roles: {sorted(_DEFAULT_COLUMNS[spec.format])}.")
    columns = {**_DEFAULT_COLUMNS[spec.format], **spec.columns}

    def to_schema(row: dict, position: int) -> dict:
        index = row.get(ROW_INDEX_COLUMN, position)
        return _row_to_schema(row, spec, columns, f"dataset {label!r} sample {index}")

    return to_schema


def load_training_dataset(
    spec: DatasetArguments | str, label: str | None = None, **spec_kwargs
) -> datasets.IterableDataset:
    """Opens a source and maps it, lazily, into the sample schema.

    Args:
        spec: a [`DatasetArguments`] or a path / Hub id (then `spec_kwargs` are its other fields, e.g.
            `format="vqa", streaming=True, columns={"answer": "label"}`).
        label: name used in error messages (defaults to the path).

    Returns:
        `datasets.IterableDataset` whose rows have exactly the schema columns (`messages`, `images`, `output_images`,
        `task` and any metadata). Iterating raises [`SampleSchemaError`] on the first row that does not fit, naming
        the dataset, the row and the column.
    """
    if isinstance(spec, str):
        spec = DatasetArguments(path=spec, **spec_kwargs)
    label = label or spec.path
    raw = open_dataset(spec)
    return raw.map(schema_mapper(spec, label), with_indices=True, remove_columns=list(raw.column_names or []) or None)


def source_task(spec: DatasetArguments, dataset: datasets.IterableDataset) -> str:
    """The task family a source counts towards in the mixture: `spec.task`, else the format's, else the first row's."""
    if spec.task is not None:
        return spec.task
    if spec.format in _FORMAT_TASKS:
        return _FORMAT_TASKS[spec.format]
    first = next(iter(dataset), None)
    if first is None:
        raise SampleSchemaError(f"dataset {spec.path!r} is empty.")
    return first["task"]


__all__ = ["load_training_dataset", "open_dataset", "schema_mapper", "source_task", "unimed5m_to_messages"]
