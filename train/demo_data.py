# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""A tiny, real, offline training set in the sample schema, built from the DICOM test images bundled with pydicom.

`python -m unimedvl.train.demo_data OUT_DIR` writes `understanding.jsonl`, `generation.jsonl`, `interleaved.jsonl`
and `images/`: two DICOMs copied as they are (read through the DICOM path of the loader at training time) and the
other images as small 8-bit PNGs (windowed from their DICOM headers). Texts are derived from the DICOM headers
(Modality, BodyPartExamined, ImageType), and the builder checks each header against the description it writes. The
copy shipped in `train/configs/tiny_data/` is what the tiny config trains on.

Licence: pydicom's test files are distributed under pydicom's MIT licence; the pixel data comes from the NEMA WG04
sample set, GDCM's test data (BSD) and images attached to pydicom issues (see `train/configs/tiny_data/README.md`).
"""

import argparse
import json
import shutil
from pathlib import Path

from PIL import Image, ImageOps

from ..modeling.medical_io import describe_dicom, load_image

MAX_SIDE = 128
LICENSE = "MIT (pydicom test data)"

# file → (expected DICOM Modality, modality name, description, provenance of the pixels).
DEMO_IMAGES = {
    "CT_small.dcm": ("CT", "Computed tomography (CT)", "An axial CT slice.", "NEMA WG04 CT1, down-sized"),
    "MR_small.dcm": ("MR", "Magnetic resonance imaging (MRI)", "A magnetic resonance image.",
                     "NEMA WG04 MR1, down-sized"),
    "J2K_pixelrep_mismatch.dcm": ("CT", "Computed tomography (CT)", "An axial CT slice of the head.",
                                  "pydicom issue attachment"),
    "examples_overlay.dcm": ("MR", "Magnetic resonance imaging (MRI)", "An MRI of the abdomen.", "GDCM test data"),
    "JPEG2000.dcm": ("NM", "Nuclear medicine (NM)", "A whole-body bone scintigraphy image.", "NEMA WG04 NM1"),
    "examples_palette.dcm": ("US", "Ultrasound (US)", "An obstetric ultrasound image.", "pydicom issue attachment"),
    "examples_rgb_color.dcm": ("US", "Ultrasound (US)", "A small-parts ultrasound image.", "NEMA WG04 US1, cropped"),
}
KEPT_AS_DICOM = ("CT_small.dcm", "MR_small.dcm")


def _save_png(image: Image.Image, path: Path):
    image = image.copy()
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
    image.save(path, optimize=False)


def build_demo_dataset(out_dir: str | Path) -> Path:
    """Writes the demo set into `out_dir` (created if needed) and returns it."""
    from pydicom.data import get_testdata_file

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = {"understanding": [], "generation": [], "interleaved": []}
    for name, (modality, modality_name, description, provenance) in DEMO_IMAGES.items():
        source_path = get_testdata_file(name)
        header = describe_dicom(source_path)
        if header["Modality"] != modality:
            raise ValueError(f"{name}: expected Modality {modality}, the header says {header['Modality']}.")
        stem = Path(name).stem
        if name in KEPT_AS_DICOM:
            image_path = f"images/{name}"
            shutil.copyfile(source_path, out_dir / image_path)
        else:
            image_path = f"images/{stem}.png"
            _save_png(load_image(source_path), out_dir / image_path)
        flipped_path = f"images/{stem}_flipped.png"
        _save_png(ImageOps.mirror(load_image(source_path)), out_dir / flipped_path)

        meta = {"modality": modality, "source": f"pydicom test file {name} ({provenance})", "license": LICENSE,
                "group_id": header["PatientID"] or stem}

        def understanding(question: str, answer: str) -> dict:
            return {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                                 {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                    "images": [image_path], **meta}

        rows["understanding"] += [understanding("Which imaging modality was used?", f"{modality_name}."),
                                  understanding("Describe the image.", description)]
        rows["generation"].append({"messages": [{"role": "user", "content": [{"type": "text", "text": description}]},
                                                {"role": "assistant", "content": [{"type": "image"}]}],
                                   "output_images": [image_path], **meta})
        rows["interleaved"].append({"messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Flip the image horizontally."}]},
            {"role": "assistant", "content": [{"type": "image"}]}],
            "images": [image_path], "output_images": [flipped_path], **meta})
    for task, task_rows in rows.items():
        with (out_dir / f"{task}.jsonl").open("w") as handle:
            for row in task_rows:
                handle.write(json.dumps({**row, "task": task}) + "\n")
    return out_dir


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m unimedvl.train.demo_data", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="folder to write the demo set into")
    print(build_demo_dataset(parser.parse_args(argv).out_dir))


if __name__ == "__main__":
    main()


__all__ = ["DEMO_IMAGES", "build_demo_dataset"]
