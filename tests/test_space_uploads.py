"""Upload checks and previews of the demo (`unimedvl.spaces.demo_uploads`): no Gradio, no model."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unimedvl.spaces import demo_uploads
from unimedvl.spaces.demo_uploads import UploadError, open_upload, render_preview, suffix_of


EXAMPLES = Path(demo_uploads.__file__).resolve().parent / "examples"


@pytest.fixture
def upload_root(tmp_path) -> Path:
    root = tmp_path / "uploads"
    root.mkdir()
    return root


def stage(root: Path, source, name: str | None = None) -> Path:
    """Put a file into the 'upload folder' as Gradio would (under its original name)."""
    target = root / (name or Path(source).name)
    shutil.copyfile(source, target)
    return target


def write(root: Path, name: str, data: bytes) -> Path:
    target = root / name
    target.write_bytes(data)
    return target


def test_suffixes_are_matched_case_insensitively_and_longest_first():
    assert suffix_of("scan.NII.GZ") == ".nii.gz"
    assert suffix_of("scan.nii") == ".nii"
    assert suffix_of("slice.DCM") == ".dcm"
    assert suffix_of("photo.JPEG") == ".jpeg"
    assert suffix_of("notes.txt") is None
    assert suffix_of("archive.gz") is None


def test_dicom_preview_uses_the_window_and_hides_identifiers(upload_root):
    upload = open_upload(stage(upload_root, EXAMPLES / "CT_small.dcm"), [upload_root])
    assert upload.kind == "dicom" and upload.name == "CT_small.dcm"
    lung = render_preview(upload, "lung")
    bone = render_preview(upload, "bone")
    assert lung.image.mode == "RGB" and lung.image.size == (128, 128)
    assert lung.num_slices == 1 and lung.index == 0
    assert not np.array_equal(np.asarray(lung.image), np.asarray(bone.image))  # the window is applied
    assert "DICOM" in lung.info and "Modality: CT" in lung.info

    import pydicom

    patient_id = str(pydicom.dcmread(EXAMPLES / "CT_small.dcm").PatientID)
    assert patient_id and patient_id not in lung.info


def test_nifti_preview_has_slices_per_plane_and_clamps_the_index(upload_root):
    upload = open_upload(stage(upload_root, EXAMPLES / "head_phantom.nii.gz"), [upload_root])
    assert upload.kind == "nifti"
    axial = render_preview(upload, "brain", "axial")
    assert (axial.num_slices, axial.index) == (48, 24)  # middle slice by default
    assert axial.image.size == (96, 112)
    assert render_preview(upload, "brain", "coronal").num_slices == 112
    assert render_preview(upload, "brain", "sagittal").num_slices == 96
    last = render_preview(upload, "brain", "axial", index=10_000)
    assert last.index == 47 and "slice 48 of 48" in last.info


def test_png_and_jpeg_uploads(upload_root):
    png = upload_root / "grey.png"
    Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64).astype(np.uint8)).save(png)
    shown = render_preview(open_upload(png, [upload_root]), "auto")
    assert shown.image.mode == "RGB" and shown.image.size == (64, 48)
    jpeg = open_upload(stage(upload_root, EXAMPLES / "fundus.jpg"), [upload_root])
    assert jpeg.kind == "image" and render_preview(jpeg).image.mode == "RGB"


def test_paths_outside_the_upload_folder_are_refused(tmp_path, upload_root):
    outside = stage(tmp_path, EXAMPLES / "CT_small.dcm")
    with pytest.raises(UploadError, match="not an upload of this session"):
        open_upload(outside, [upload_root])
    link = upload_root / "link.dcm"
    link.symlink_to(outside)  # a link inside the folder pointing out of it
    with pytest.raises(UploadError, match="not an upload of this session"):
        open_upload(link, [upload_root])
    with pytest.raises(UploadError, match="not an upload of this session"):
        open_upload(upload_root / ".." / "uploads" / ".." / outside.name, [upload_root])
    with pytest.raises(UploadError, match="upload an image first"):
        open_upload(None, [upload_root])


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"hello", "not a supported file type"),
        ("fake.png", b"GIF89a not a png at all", "not a valid PNG or JPEG"),
        ("fake.jpg", b"\x89PNG but named jpg", "not a valid PNG or JPEG"),
        ("fake.dcm", b"not a dicom file " * 20, "not a valid DICOM file"),
        ("fake.nii.gz", b"plain bytes, not gzip", "not gzip-compressed"),
        ("fake.nii.gz", gzip.compress(b"\x00" * 400), "not a valid NIfTI volume"),
        ("fake.nii", b"\x00" * 400, "not a valid NIfTI volume"),
        ("empty.dcm", b"", "is empty"),
    ],
)
def test_contents_must_match_the_suffix(upload_root, name, data, message):
    with pytest.raises(UploadError, match=message):
        open_upload(write(upload_root, name, data), [upload_root])


def test_size_limits(upload_root, monkeypatch):
    path = stage(upload_root, EXAMPLES / "CT_small.dcm")
    with pytest.raises(UploadError, match="the limit is"):
        open_upload(path, [upload_root], max_bytes=1000)
    monkeypatch.setattr(demo_uploads, "MAX_IMAGE_PIXELS", 100)  # a 128 x 128 CT is now "too large"
    with pytest.raises(UploadError, match="too large to preview"):
        render_preview(open_upload(path, [upload_root]))


def test_decoder_errors_name_the_upload_not_the_server_path(upload_root):
    data = (EXAMPLES / "CT_small.dcm").read_bytes()
    truncated = write(upload_root, "cut.dcm", data[: len(data) // 2])  # header fine, pixel data cut
    with pytest.raises(UploadError) as caught:
        render_preview(open_upload(truncated, [upload_root]))
    assert str(upload_root) not in str(caught.value)


def test_unknown_window_or_plane(upload_root):
    upload = open_upload(stage(upload_root, EXAMPLES / "CT_small.dcm"), [upload_root])
    with pytest.raises(UploadError, match="Unknown window"):
        render_preview(upload, "sunset")
    with pytest.raises(UploadError, match="Unknown plane"):
        render_preview(upload, "auto", "oblique")


def test_every_shipped_example_previews(upload_root):
    for path in sorted(EXAMPLES.iterdir()):
        if path.name == "README.md":
            continue
        shown = render_preview(open_upload(stage(upload_root, path), [upload_root]))
        assert shown.image.mode == "RGB", path.name
