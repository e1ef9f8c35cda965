# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Checking and previewing the files people upload to the demo (PNG/JPEG, DICOM, NIfTI).

Nothing here depends on Gradio. The app hands over the path of a file Gradio has already stored in its upload folder;
[`open_upload`] refuses anything else (a path typed by a user is never opened), then checks the size, the suffix
and the file's magic bytes, and bounds the decoded size before a single pixel is read. [`render_preview`] turns the
upload into the 8-bit RGB picture the model will see (window preset, slice / frame), with a short description that
leaves out identifying header fields.

Errors are [`UploadError`]s whose messages are written for the person in front of the browser: they name the file
by its original name, never by its server path.
"""

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from unimedvl.modeling.medical_io import (
    MedicalImageError,
    WINDOW_PRESETS,
    describe_dicom,
    load_image,
)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ACCEPTED_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES

DEFAULT_MAX_UPLOAD_MB = 64
MAX_IMAGE_PIXELS = 50_000_000  # one decoded 2-D image (PNG/JPEG page, DICOM frame)
MAX_DECODED_BYTES = 1 << 30  # a whole decoded volume / multi-frame series, in bytes

# NIfTI planes in canonical RAS+ orientation, as `medical_io.nifti_to_array` numbers them.
PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}

# DICOM header fields shown next to the preview. PatientID (and any other identifier) is deliberately left out.
_SHOWN_DICOM_FIELDS = ("Modality", "BodyPartExamined", "SeriesDescription", "StudyDescription", "ViewPosition")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI_HEADER_SIZES = (348, 540)  # NIfTI-1, NIfTI-2


class UploadError(ValueError):
    """An upload that cannot be used; the message is meant to be shown to the user as is."""


@dataclass(frozen=True)
class Upload:
    """A checked upload: where Gradio stored it, the name it was uploaded with, and its kind."""

    path: Path
    name: str
    kind: str  # "image" | "dicom" | "nifti"


@dataclass(frozen=True)
class Preview:
    """What the model will see, plus what the UI needs to show around it."""

    image: Image.Image
    info: str  # Markdown
    num_slices: int  # slices of the chosen NIfTI plane, or frames of a DICOM; 1 for 2-D images
    index: int  # the slice / frame shown


def suffix_of(name: str) -> str | None:
    """The accepted suffix `name` ends with (case-insensitive), or None."""
    lowered = name.lower()
    return next(
        (suffix for suffix in sorted(ACCEPTED_SUFFIXES, key=len, reverse=True) if lowered.endswith(suffix)), None
    )


def _is_within(path: Path, roots) -> bool:
    for root in roots:
        try:
            path.relative_to(Path(root).resolve())
            return True
        except ValueError:
            continue
    return False


def open_upload(
    path, allowed_roots, max_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20, original_name: str | None = None
) -> Upload:
    """Check an uploaded file before anything decodes it.

    Args:
        path: where Gradio stored the upload.
        allowed_roots: folders uploads may live in (Gradio's upload folder); any other path is refused.
        max_bytes: largest accepted file.
        original_name: the name it was uploaded with (default: the stored file's name, which Gradio keeps).

    Raises:
        `UploadError`: outside the allowed folders, missing, too large, an unaccepted type, or contents that do not
        match the suffix.
    """
    if not path:
        raise UploadError("Please upload an image first (PNG, JPEG, DICOM or NIfTI).")
    resolved = Path(os.fspath(path)).resolve()
    name = original_name or resolved.name
    if not _is_within(resolved, allowed_roots) or not resolved.is_file():
        raise UploadError("That file is not an upload of this session; please upload it again.")
    suffix = suffix_of(name)
    if suffix is None:
        raise UploadError(
            f"'{name}' is not a supported file type. Upload a PNG or JPEG image, a DICOM file (.dcm) or a NIfTI "
            "volume (.nii / .nii.gz)."
        )
    size = resolved.stat().st_size
    if size > max_bytes:
        raise UploadError(f"'{name}' is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    if size == 0:
        raise UploadError(f"'{name}' is empty.")
    with open(resolved, "rb") as handle:
        head = handle.read(132)
    kind = _kind_from_contents(suffix, head, resolved, name)
    return Upload(path=resolved, name=name, kind=kind)


def _kind_from_contents(suffix: str, head: bytes, path: Path, name: str) -> str:
    if suffix in IMAGE_SUFFIXES:
        if head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC):
            return "image"
        raise UploadError(f"'{name}' is not a valid PNG or JPEG image.")
    if suffix in DICOM_SUFFIXES:
        if len(head) == 132 and head[128:132] == b"DICM":
            return "dicom"
        raise UploadError(
            f"'{name}' is not a valid DICOM file (no 'DICM' marker at byte 128). Export it from your viewer as a "
            "standard DICOM Part 10 file."
        )
    if suffix == ".nii.gz":
        if not head.startswith(_GZIP_MAGIC):
            raise UploadError(f"'{name}' is not gzip-compressed; a .nii.gz file must be.")
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(4)
        except (OSError, EOFError) as error:
            raise UploadError(f"'{name}' is a damaged gzip file ({error}).") from None
    if len(head) >= 4 and any(struct.unpack(order + "i", head[:4])[0] in _NIFTI_HEADER_SIZES for order in "<>"):
        return "nifti"
    raise UploadError(f"'{name}' is not a valid NIfTI volume (unexpected header).")


def window_choices() -> list[str]:
    """The window presets offered in the UI, `auto` (DICOM header window, else min-max) first."""
    return ["auto"] + [name for name in WINDOW_PRESETS if name != "auto"]


def render_preview(upload: Upload, window: str = "auto", plane: str = "axial", index: int | None = None) -> Preview:
    """Decode an upload as the model's 8-bit RGB input.

    Args:
        upload: from [`open_upload`].
        window: a key of `WINDOW_PRESETS`; ignored by colour images.
        plane: NIfTI only: `axial`, `coronal` or `sagittal`.
        index: NIfTI slice (of `plane`) or DICOM frame; clamped to the valid range; default: the middle one.

    Raises:
        `UploadError`: unknown window or plane, an image too large to decode, or contents that cannot be decoded.
    """
    if window not in WINDOW_PRESETS:
        raise UploadError(f"Unknown window '{window}'; choose one of {', '.join(window_choices())}.")
    if plane not in PLANES:
        raise UploadError(f"Unknown plane '{plane}'; choose axial, coronal or sagittal.")
    try:
        if upload.kind == "nifti":
            return _nifti_preview(upload, window, plane, index)
        if upload.kind == "dicom":
            return _dicom_preview(upload, window, index)
        return _image_preview(upload, window)
    except MedicalImageError as error:
        raise UploadError(_without_path(str(error), upload)) from None


def _without_path(message: str, upload: Upload) -> str:
    """A decoder message with the server path replaced by the upload's name, and the `image: ` argument prefix cut."""
    message = message.replace(str(upload.path), upload.name)
    return message.removeprefix("image: ").strip()


def _middle_or_clamped(index: int | None, count: int) -> int:
    if index is None or index < 0:
        return count // 2
    return min(int(index), count - 1)


def _image_preview(upload: Upload, window: str) -> Preview:
    try:
        with Image.open(upload.path) as probe:
            width, height = probe.size
    except Exception:
        raise UploadError(f"'{upload.name}' could not be read as an image.") from None
    _check_pixels(upload, width * height)
    image = load_image(upload.path, window=window)
    return Preview(image=image, info=f"**{upload.name}** · image · {width} × {height}", num_slices=1, index=0)


def _dicom_preview(upload: Upload, window: str, index: int | None) -> Preview:
    header = describe_dicom(upload.path)
    rows, columns = header.get("Rows") or 0, header.get("Columns") or 0
    frames = header.get("NumberOfFrames") or 1
    if not rows or not columns:
        raise UploadError(f"'{upload.name}' is a DICOM file without an image (no Rows / Columns).")
    _check_pixels(upload, rows * columns, total=rows * columns * frames * 8)
    frame = _middle_or_clamped(index, frames)
    image = load_image(upload.path, window=window, frame_index=frame)
    details = [f"{key}: {header[key]}" for key in _SHOWN_DICOM_FIELDS if header.get(key)]
    info = f"**{upload.name}** · DICOM · {columns} × {rows}"
    if frames > 1:
        info += f" · frame {frame + 1} of {frames}"
    if details:
        info += "  \n" + " · ".join(details)
    return Preview(image=image, info=info, num_slices=frames, index=frame)


def _nifti_preview(upload: Upload, window: str, plane: str, index: int | None) -> Preview:
    import nibabel

    try:
        volume = nibabel.load(upload.path)
        shape = volume.header.get_data_shape()
        itemsize = volume.header.get_data_dtype().itemsize
    except Exception:
        raise UploadError(f"'{upload.name}' could not be read as a NIfTI volume.") from None
    if len(shape) < 3:
        raise UploadError(f"'{upload.name}' holds {len(shape)}-D data; a NIfTI volume (3-D or 4-D) is expected.")
    canonical = canonical_shape(volume.affine, shape[:3])
    axis = PLANES[plane]
    in_plane = [size for position, size in enumerate(canonical) if position != axis]
    _check_pixels(upload, in_plane[0] * in_plane[1], total=int(shape[0] * shape[1] * shape[2]) * max(itemsize, 8))
    count = canonical[axis]
    position = _middle_or_clamped(index, count)
    image = load_image(upload.path, window=window, slice_index=position, axis=axis)
    dimensions = " × ".join(str(size) for size in shape)
    info = f"**{upload.name}** · NIfTI · {dimensions} · {plane} slice {position + 1} of {count}"
    return Preview(image=image, info=info, num_slices=count, index=position)


def canonical_shape(affine, shape) -> tuple[int, int, int]:
    """Shape of a volume once reoriented to RAS+ (what `nibabel.as_closest_canonical` gives), without reading it."""
    import nibabel

    orientation = nibabel.io_orientation(affine)
    canonical = [0, 0, 0]
    for array_axis, (output_axis, _flip) in enumerate(orientation[:3]):
        canonical[int(output_axis)] = int(shape[array_axis])
    return tuple(canonical)


def _check_pixels(upload: Upload, pixels: int, total: int | None = None) -> None:
    if pixels > MAX_IMAGE_PIXELS:
        raise UploadError(
            f"'{upload.name}' is too large to preview ({pixels / 1e6:.0f} megapixels per image; the limit is "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f})."
        )
    if total is not None and total > MAX_DECODED_BYTES:
        raise UploadError(
            f"'{upload.name}' would take {total / 2**30:.1f} GB once decoded; the limit is "
            f"{MAX_DECODED_BYTES / 2**30:.0f} GB. Upload a single series or a cropped volume."
        )


__all__ = [
    "ACCEPTED_SUFFIXES",
    "DEFAULT_MAX_UPLOAD_MB",
    "PLANES",
    "Preview",
    "Upload",
    "UploadError",
    "canonical_shape",
    "open_upload",
    "render_preview",
    "suffix_of",
    "window_choices",
]
