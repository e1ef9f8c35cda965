# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""On-disk layout of a built UniMedVL-Nano data set, and its loader.

    <output_dir>/
        data/train-00000-of-00001.parquet   rows of the train split, images embedded as PNG bytes
        data/test-00000-of-00001.parquet    rows of the held-out split
        README.md                           data card (YAML header: the `datasets` configuration)
        dataset_info.json                   build parameters, pinned sources, counts, licences, answer sets

`datasets.load_dataset(output_dir)` reads it as is (images as `datasets.Image`, decoded lazily on access); so does
the trainer's `load_training_dataset(output_dir)` (no `image_root` needed: the bytes are embedded).
"""

import json
from collections import Counter
from pathlib import Path

import datasets

from .imaging import png_bytes
from .samples import METADATA_COLUMNS, TASKS


_CONTENT_ITEM = {"type": datasets.Value("string"), "text": datasets.Value("string")}
FEATURES = datasets.Features({
    "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.List(_CONTENT_ITEM)}),
    "images": datasets.List(datasets.Image()),
    "output_images": datasets.List(datasets.Image()),
    **{column: datasets.Value("string") for column in METADATA_COLUMNS},
})


def split_file(split: str) -> str:
    """Path of a split's parquet file, relative to the output folder."""
    return f"data/{split}-00000-of-00001.parquet"


def _embed(names, images: dict) -> list[dict]:
    return [{"path": name, "bytes": png_bytes(images[name])} for name in names]


def write_split(rows: list[dict], images: dict, path: Path) -> None:
    """Write one split as parquet with the PNG bytes of every referenced image embedded."""
    encoded = [{**row, "images": _embed(row["images"], images), "output_images": _embed(row["output_images"], images)}
               for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(encoded, features=FEATURES).to_parquet(str(path))


def count_rows(rows_by_split: dict) -> dict:
    """Counts used by the data cards: rows per modality x split x task, question types, closed answers (for
    majority-class baselines), distinct images and groups per modality."""
    counts = {"rows": {}, "question_types": {}, "answers": {}, "distinct_images": {}, "groups": {}}
    for split, rows in sorted(rows_by_split.items()):
        counts["rows"][split] = {
            modality: {task: number for task in TASKS if (number := per_task[task])}
            for modality, per_task in _by_modality(rows).items()
        }
        counts["question_types"][split] = dict(sorted(Counter(row["question_type"] for row in rows).items()))
        answers = {}
        for row in rows:
            if row["answer"] is not None and row["question_type"] != "describe":
                answers.setdefault(row["question_type"], Counter())[row["answer"]] += 1
        counts["answers"][split] = {kind: dict(sorted(found.items())) for kind, found in sorted(answers.items())}
        images, groups = {}, {}
        for row in rows:
            images.setdefault(row["modality"], set()).add(row["image_id"])
            groups.setdefault(row["modality"], set()).add(row["group_id"])
        counts["distinct_images"][split] = {modality: len(ids) for modality, ids in sorted(images.items())}
        counts["groups"][split] = {modality: sorted(ids) for modality, ids in sorted(groups.items())}
    return counts


def _by_modality(rows) -> dict:
    table = {}
    for row in rows:
        table.setdefault(row["modality"], Counter())[row["task"]] += 1
    return dict(sorted(table.items()))


def _card(info: dict) -> str:
    """README.md of the output folder: `datasets` configuration + a short summary of `info`."""
    splits = sorted(info["counts"]["rows"])
    yaml = ["---", "license: other", "pretty_name: UniMedVL-Nano (offline medical images from package registries)",
            "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        yaml += [f"  - split: {split}", f"    path: {split_file(split)}"]
    yaml.append("---")
    lines = ["", "# UniMedVL-Nano data set", "",
             "Real medical images obtainable offline from PyPI, Debian and npm packages, rendered as "
             f"{info['build']['image_size']}x{info['build']['image_size']} RGB PNGs, with questions, captions and "
             "paired transformations derived from DICOM header fields and known geometry. Built by "
             "`python -m unimedvl.train.build_nano_dataset`; see `docs/nano_data_card.md` in the unimedvl repository "
             "for sources, licences, coverage and biases. **Not for clinical use.**", "",
             "Held-out split by subject / volume / series (`group_id`), never by slice.", "",
             "| split | modality | understanding | generation | interleaved | distinct images |",
             "|---|---|---|---|---|---|"]
    for split in splits:
        for modality, per_task in info["counts"]["rows"][split].items():
            cells = " | ".join(str(per_task.get(task, 0)) for task in TASKS)
            lines.append(f"| {split} | {modality} | {cells} | {info['counts']['distinct_images'][split][modality]} |")
    lines += ["", "## Sources", "", "| package | registry | version | sha256 | package licence |",
              "|---|---|---|---|---|"]
    for artifact in info["artifacts"]:
        lines.append(f"| {artifact['name']} | {artifact['registry']} | {artifact['version']} | "
                     f"`{artifact['sha256'][:16]}…` | {artifact['license']} |")
    lines += ["", "Licence of the pixels of every image: the `license` column (and `dataset_info.json`).", ""]
    return "\n".join(yaml + lines)


def write_nano_dataset(rows_by_split: dict, images: dict, output_dir, info: dict) -> Path:
    """Write the parquet splits, `dataset_info.json` (with the counts added to `info`) and `README.md`."""
    output_dir = Path(output_dir)
    for split, rows in sorted(rows_by_split.items()):
        write_split(rows, images, output_dir / split_file(split))
    info = {**info, "counts": count_rows(rows_by_split)}
    (output_dir / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    (output_dir / "README.md").write_text(_card(info))
    return output_dir


def load_nano_dataset(output_dir, split: str = "train") -> datasets.Dataset:
    """A built split as a `datasets.Dataset`; `images` / `output_images` are lists of `datasets.Image` decoded
    lazily (a PIL image when a row is accessed)."""
    path = Path(output_dir) / split_file(split)
    if not path.exists():
        raise FileNotFoundError(f"no {split!r} split at {path}; build it with "
                                "`python -m unimedvl.train.build_nano_dataset OUTPUT_DIR`.")
    return datasets.Dataset.from_parquet(str(path), features=FEATURES)


__all__ = ["FEATURES", "count_rows", "load_nano_dataset", "split_file", "write_nano_dataset", "write_split"]
