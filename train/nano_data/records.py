# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""One stored image of the data set, with its facts, provenance and held-out group, and the group-level split."""

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .annotations import ImageFacts


SPLITS = ("train", "test")


@dataclass
class ImageRecord:
    """A final `size` x `size` RGB image and everything the samples about it are derived from.

    Attributes:
        image_id: unique, stable name; the image is stored as `images/<image_id>.png`.
        image: the RGB image.
        facts: labels of the image ([`ImageFacts`]).
        group_id: subject / volume / series the image comes from; the split is made on it, never on slices.
        split: "train" or "test".
        source: "<package> <version>: <file inside the package>".
        license: licence of the pixels.
        pair_key: images with the same pair_key are the same pixels under different CT windows (window-change
            pairs); None otherwise.
    """

    image_id: str
    image: Image.Image
    facts: ImageFacts
    group_id: str
    split: str
    source: str
    license: str
    pair_key: str | None = None


def split_of(group_id: str, test_groups) -> str:
    """ "test" for a held-out group, else "train": the split is a function of the group only."""
    return "test" if group_id in test_groups else "train"


def check_group_split(records) -> None:
    """Raise `ValueError` if a group appears in two splits or an image id is used twice."""
    split_by_group, seen_ids = {}, set()
    for record in records:
        if record.split not in SPLITS:
            raise ValueError(f"{record.image_id}: unknown split {record.split!r}.")
        if record.image_id in seen_ids:
            raise ValueError(f"image id {record.image_id!r} is used twice.")
        seen_ids.add(record.image_id)
        previous = split_by_group.setdefault(record.group_id, record.split)
        if previous != record.split:
            raise ValueError(f"group {record.group_id!r} is in both {previous!r} and {record.split!r}.")


def drop_duplicate_images(records) -> list:
    """Records with pixel-identical images removed (first kept); raises if a duplicate crosses splits or groups,
    which would mean two catalog entries are the same acquisition under different group ids."""
    first_by_hash, kept = {}, []
    for record in records:
        digest = hashlib.sha256(np.asarray(record.image).tobytes()).hexdigest()
        original = first_by_hash.get(digest)
        if original is None:
            first_by_hash[digest] = record
            kept.append(record)
        elif original.group_id != record.group_id:
            raise ValueError(f"{record.image_id} ({record.group_id}) duplicates {original.image_id} "
                             f"({original.group_id}).")
    return kept


__all__ = ["ImageRecord", "SPLITS", "check_group_split", "drop_duplicate_images", "split_of"]
