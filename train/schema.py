# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The training sample schema (one row per sample, TRL-style typed messages) and image decoding.

```python
{
    "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which organ is shown?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The liver."}]},
    ],
    "images": ["scan.dcm"],          # conditioning images, consumed by image items of system/user turns, in order
    "output_images": [],             # generation targets, consumed by image items of assistant turns, in order
    "task": "understanding",         # optional: understanding | generation | interleaved (inferred when absent)
    "modality": "CT", "source": "...", "license": "...", "group_id": "...",   # optional metadata, passed through
}
```

A plain string `content` is one text item. An image may be a PIL image, a `{"bytes": ..., "path": ...}` mapping (what
`datasets.Image(decode=False)` yields), a path (PNG/JPEG/DICOM/NIfTI, through [`medical_io.load_image`]), raw bytes,
or an array.
"""

import gzip
import io
import os
from typing import Any

from PIL import Image

from ..modeling.medical_io import MedicalImageError, is_nifti_path, load_image
from .config import TASKS

ROLES = ("system", "user", "assistant")
METADATA_KEYS = ("modality", "source", "license", "group_id")
SCHEMA_KEYS = ("messages", "images", "output_images", "task", *METADATA_KEYS)


class SampleSchemaError(ValueError):
    """A row that does not follow the sample schema; the message names the sample and the offending column."""


class ImageDecodeError(ValueError):
    """An image that cannot be decoded (corrupt bytes, missing file, unsupported DICOM codec...)."""


def _error(where: str, message: str) -> SampleSchemaError:
    return SampleSchemaError(f"{where}: {message}")


def _normalize_content(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _error(where, f"`content` must be a string or a list of items, got {type(content).__name__}.")
    items = []
    for position, item in enumerate(content):
        item_where = f"{where}.content[{position}]"
        if not isinstance(item, dict) or item.get("type") not in ("text", "image"):
            raise _error(item_where, f"an item must be {{'type': 'text', 'text': ...}} or {{'type': 'image'}}, got "
                                     f"{item!r}.")
        if item["type"] == "text":
            if not isinstance(item.get("text"), str):
                raise _error(item_where, "a text item needs a string `text`.")
            items.append({"type": "text", "text": item["text"]})
        else:
            items.append({"type": "image"})
    return items


def infer_task(num_input_images: int, num_output_images: int) -> str:
    """understanding (no output image), generation (output images only) or interleaved (input and output images)."""
    if num_output_images == 0:
        return "understanding"
    return "generation" if num_input_images == 0 else "interleaved"


def normalize_sample(row: dict, where: str = "sample") -> dict:
    """Checks one row against the schema and returns it normalised: every `content` a list of items, `images` and
    `output_images` lists, `task` set, metadata passed through (other columns are dropped).

    Args:
        row: the raw row.
        where: how errors name the row, e.g. `"dataset 'dicom_qa' sample 17"`.

    Raises:
        `SampleSchemaError`: a missing `messages` column, an unknown role or item type, image items that do not
        match the number of `images` / `output_images`, an invalid `task`, or a sample with nothing to learn.
    """
    if "messages" not in row:
        raise _error(where, f"column 'messages' is missing (columns present: {sorted(row)}); map your columns with "
                            "`columns:` in the dataset entry, or pick a `format:`.")
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise _error(where, "column 'messages' must be a non-empty list of {'role', 'content'} turns.")
    images = list(row.get("images") or [])
    output_images = list(row.get("output_images") or [])

    normalized, inputs_used, outputs_used, has_target = [], 0, 0, False
    for turn_index, message in enumerate(messages):
        turn_where = f"{where} messages[{turn_index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES or "content" not in message:
            raise _error(turn_where, f"a turn must be {{'role': one of {list(ROLES)}, 'content': ...}}, got "
                                     f"{message!r}.")
        content = _normalize_content(message["content"], turn_where)
        num_images = sum(item["type"] == "image" for item in content)
        if message["role"] == "assistant":
            outputs_used += num_images
            has_target = has_target or bool(content)
        else:
            inputs_used += num_images
        normalized.append({"role": message["role"], "content": content})

    if inputs_used != len(images):
        raise _error(where, f"column 'images' holds {len(images)} image(s) but system/user turns have {inputs_used} "
                            "image item(s).")
    if outputs_used != len(output_images):
        raise _error(where, f"column 'output_images' holds {len(output_images)} image(s) but assistant turns have "
                            f"{outputs_used} image item(s).")
    if not has_target:
        raise _error(where, "no assistant content: the sample has nothing to learn.")
    task = row.get("task") or infer_task(len(images), len(output_images))
    if task not in TASKS:
        raise _error(where, f"column 'task' must be one of {list(TASKS)}, got {task!r}.")

    sample = {"messages": normalized, "images": images, "output_images": output_images, "task": task}
    sample.update({key: row[key] for key in METADATA_KEYS if row.get(key) is not None})
    return sample


# ---------------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------------


def _image_from_bytes(data: bytes, path: str | None) -> Image.Image:
    if len(data) > 132 and data[128:132] == b"DICM":
        import pydicom

        return load_image(pydicom.dcmread(io.BytesIO(data)))
    if path is not None and is_nifti_path(path):
        import nibabel

        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        return load_image(nibabel.Nifti1Image.from_bytes(raw))
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return load_image(image)


def decode_image(image: Any, image_root: str | os.PathLike | None = None) -> Image.Image:
    """Any schema image → 8-bit RGB PIL image (DICOM/NIfTI windowed by [`medical_io.load_image`]).

    Args:
        image: PIL image, `{"bytes", "path"}` mapping, path, raw bytes or array.
        image_root: folder that relative paths are resolved against.

    Raises:
        `ImageDecodeError`: the image cannot be read or decoded.
    """
    try:
        if isinstance(image, dict):
            path = image.get("path")
            if image.get("bytes") is not None:
                return _image_from_bytes(image["bytes"], path)
            if path is None:
                raise ImageDecodeError("an image mapping has neither 'bytes' nor 'path'.")
            image = path
        if isinstance(image, (bytes, bytearray)):
            return _image_from_bytes(bytes(image), None)
        if isinstance(image, (str, os.PathLike)) and image_root is not None and not os.path.isabs(image):
            image = os.path.join(image_root, image)
        return load_image(image)
    except ImageDecodeError:
        raise
    except (MedicalImageError, OSError, ValueError, SyntaxError) as error:
        description = image if isinstance(image, (str, os.PathLike)) else type(image).__name__
        raise ImageDecodeError(f"cannot decode image {description}: {error}") from error


__all__ = [
    "ImageDecodeError",
    "METADATA_KEYS",
    "ROLES",
    "SampleSchemaError",
    "decode_image",
    "infer_task",
    "normalize_sample",
]
