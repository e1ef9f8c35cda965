# Copyright 2025 The UniMedVL-HF contributors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Turn medical and natural images into the 8-bit RGB `PIL.Image.Image` that UniMedVL's image processor expects.

UniMedVL (like BAGEL, which it builds on) consumes plain 8-bit RGB pictures. Clinical data rarely looks like that:
CT and MR arrive as DICOM files or NIfTI volumes holding 12-16 bit values (Hounsfield units for CT) that need a
*window* to become a displayable grey image, X-rays may be stored inverted (MONOCHROME1), ultrasound may be YBR or
palette colour, and PNGs may carry transparency. [`load_image`] handles all of these and returns one RGB image.

Value flow for grayscale data:

    stored pixels --(Modality LUT: slope/intercept or LUT)--> values (e.g. HU), float64
                  --(window: explicit (center, width), preset, DICOM header VOI, percentile or min-max)--> uint8
                  --(MONOCHROME1 only: invert)--> grey copied to R, G, B

Only the standard library, numpy and PIL are imported at module level; pydicom and nibabel are imported inside the
functions that need them (this file also ships as Hugging Face Hub custom code, where they may be absent).
"""

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "WINDOW_PRESETS",
    "MedicalImageError",
    "apply_window",
    "describe_dicom",
    "dicom_to_array",
    "is_dicom_path",
    "is_nifti_path",
    "load_image",
    "load_images",
    "nifti_to_array",
    "to_uint8_minmax",
]


# Named display windows, `name -> (center, width)`.
#
# The fixed windows are the usual CT windows, in Hounsfield units (HU), i.e. they are applied to values *after* the
# DICOM Modality LUT (RescaleSlope / RescaleIntercept). They are meaningless for MR, whose intensities have no
# absolute scale: for MR use "auto" (the window the scanner / PACS stored in the DICOM header, else min-max) or "mr"
# (1st-99th percentile of the image, robust to a few very bright voxels).
#
# The two data-driven entries hold a strategy name instead of numbers:
#   "auto": DICOM header window (first VOI LUT or WindowCenter/WindowWidth, pydicom semantics), else min-max.
#           This is also what `window=None` does.
#   "mr":   percentile window from the 1st to the 99th percentile of the image values.
WINDOW_PRESETS: dict[str, tuple[float, float] | str] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "soft-tissue": (40.0, 400.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "auto": "auto",
    "mr": "percentile",
}

# A window after validation by `_resolve_window`: None ("auto"), "percentile" or (center, width).
_Window = tuple[float, float] | str | None

# Percentiles used by the "mr" preset.
MR_PERCENTILES = (1.0, 99.0)

DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")

# Header fields returned by `describe_dicom`; the integer ones are converted with `int`.
_DESCRIBE_TEXT_FIELDS = (
    "Modality",
    "BodyPartExamined",
    "SeriesDescription",
    "StudyDescription",
    "ViewPosition",
    "PhotometricInterpretation",
    "PatientID",
)
_DESCRIBE_INT_FIELDS = ("Rows", "Columns", "NumberOfFrames")

_DECODER_HINT = (
    "Install a decoder for compressed DICOM: `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` "
    "(JPEG, JPEG-LS, JPEG 2000), or `pip install python-gdcm`, or `pip install pyjpegls` (JPEG-LS)."
)


class MedicalImageError(ValueError):
    """Raised when an input cannot be turned into an RGB image; the message names the offending argument."""


# ---------------------------------------------------------------------------------------------------------------------
# 8-bit mapping
# ---------------------------------------------------------------------------------------------------------------------


def _linear_to_uint8(values: np.ndarray, low: float, width: float) -> np.ndarray:
    """Map `[low, low + width]` linearly onto `[0, 255]`, clipping outside, rounding half up.

    This is `floor(clip((value - low) / width, 0, 1) * 255 + 0.5)`, computed in float64. NaN maps to 0.
    """
    scaled = np.clip((np.asarray(values, dtype=np.float64) - low) / width, 0.0, 1.0)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.floor(scaled * 255.0 + 0.5).astype(np.uint8)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Apply a display window and return 8-bit grey levels.

    `u8 = floor(clip((value - (center - width / 2)) / width, 0, 1) * 255 + 0.5)`: values at or below the lower edge
    become 0, values at or above the upper edge become 255. This is the exact formula used to make the project's
    reference images, so it must not change.

    Args:
        values (`np.ndarray` of any shape and real dtype): intensities in the window's unit (HU for CT presets).
        center (`float`): window center (level).
        width (`float`): window width, > 0.

    Returns:
        `np.ndarray` of dtype `uint8` and the same shape as `values`.
    """
    center, width = _check_center_width(center, width)
    return _linear_to_uint8(values, center - width / 2.0, width)


def to_uint8_minmax(values: np.ndarray) -> np.ndarray:
    """Stretch the finite value range of `values` onto `[0, 255]` (same rounding as [`apply_window`]).

    A constant image (or one without finite values) maps to all zeros. NaN maps to 0, +/-inf to 255 / 0.

    Args:
        values (`np.ndarray` of any shape and real dtype).

    Returns:
        `np.ndarray` of dtype `uint8` and the same shape as `values`.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _linear_to_uint8(values, low, high - low)


def _to_uint8_percentile(values: np.ndarray, low_pct: float, high_pct: float) -> np.ndarray:
    """Window from the `low_pct`-th to the `high_pct`-th percentile of the finite values (min-max if degenerate)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = (float(v) for v in np.percentile(finite, [low_pct, high_pct]))
    if high <= low:
        # Mostly constant image (e.g. > 98% background): the percentile window is empty, fall back to min-max.
        return to_uint8_minmax(values)
    return _linear_to_uint8(values, low, high - low)


def _check_center_width(center: Any, width: Any) -> tuple[float, float]:
    try:
        center, width = float(center), float(width)
    except (TypeError, ValueError):
        raise MedicalImageError(f"window: expected numeric (center, width), got ({center!r}, {width!r}).") from None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise MedicalImageError(
            f"window: expected a finite center and a width > 0, got center={center}, width={width}."
        )
    return center, width


def _resolve_window(window: Any) -> _Window:
    """Validate `window` and return `None` ("auto"), `"percentile"` or a `(center, width)` tuple of floats."""
    if window is None:
        return None
    if isinstance(window, str):
        key = window.strip().lower().replace("_", "-")
        if key not in WINDOW_PRESETS:
            raise MedicalImageError(
                f"window: unknown preset {window!r}; expected one of {sorted(WINDOW_PRESETS)} "
                "or a (center, width) tuple."
            )
        preset = WINDOW_PRESETS[key]
        if preset == "auto":
            return None
        if preset == "percentile":
            return "percentile"
        return _check_center_width(*preset)
    if (
        isinstance(window, (tuple, list, np.ndarray))
        and len(window) == 2
        and not any(isinstance(v, (bool, np.bool_)) for v in window)
    ):
        return _check_center_width(window[0], window[1])
    raise MedicalImageError(
        f"window: expected None, a (center, width) tuple or a preset name from {sorted(WINDOW_PRESETS)}, "
        f"got {window!r}."
    )


def _gray_to_uint8(values: np.ndarray, window: _Window) -> np.ndarray:
    """Map a grayscale (H, W) array to uint8 with a resolved window (see `_resolve_window`)."""
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if window is None:
        # 8-bit data is already displayable; anything deeper is stretched over its own range.
        return values if values.dtype == np.uint8 else to_uint8_minmax(values)
    if window == "percentile":
        return _to_uint8_percentile(values, *MR_PERCENTILES)
    return apply_window(values, *window)


# ---------------------------------------------------------------------------------------------------------------------
# Arrays and PIL images
# ---------------------------------------------------------------------------------------------------------------------


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Flatten transparency onto a white background, as the original UniMedVL / BAGEL preprocessing does."""
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _check_array(array: np.ndarray) -> np.ndarray:
    """Validate dtype and shape; return (H, W) or (H, W, 3|4) (a (H, W, 1) array is squeezed)."""
    kind = array.dtype.kind  # b: bool, i/u: integers, f: floats
    if kind not in "biuf":
        raise MedicalImageError(
            f"image: unsupported array dtype {array.dtype}; expected bool, an integer or a floating point dtype."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise MedicalImageError(
            f"image: unsupported array shape {tuple(array.shape)}; expected (H, W), (H, W, 1), (H, W, 3) or "
            "(H, W, 4) (channel-last; transpose channel-first data first)."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise MedicalImageError(f"image: array has an empty spatial size {tuple(array.shape)}.")
    return array


def _colour_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map colour channels to uint8: 8-bit is kept, bool becomes 0/255, anything else is min-max over all channels.

    Stretching all channels jointly (not one by one) keeps the hue. Colour data is never windowed.
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    return to_uint8_minmax(values)


def _alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """Alpha in the dtype's natural range (uint8 0-255, other ints 0-max, float/bool 0-1) -> uint8 0-255."""
    if alpha.dtype == np.uint8:
        return alpha
    if np.issubdtype(alpha.dtype, np.integer):
        alpha = alpha.astype(np.float64) / np.iinfo(alpha.dtype).max
    return np.floor(np.clip(np.nan_to_num(alpha.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _gray_to_image(grey: np.ndarray) -> Image.Image:
    """(H, W) uint8 -> RGB image with the grey level copied to R, G and B."""
    return Image.fromarray(np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1)))


def _array_to_rgb(array: np.ndarray, window: _Window) -> Image.Image:
    """(H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4) array -> RGB image (grayscale windowed, RGBA on white)."""
    array = _check_array(np.asarray(array))
    if array.ndim == 2:
        return _gray_to_image(_gray_to_uint8(array, window))
    rgb = np.ascontiguousarray(_colour_to_uint8(array[..., :3]))
    if array.shape[-1] == 3:
        return Image.fromarray(rgb)
    rgba = np.concatenate([rgb, _alpha_to_uint8(array[..., 3])[..., None]], axis=-1)
    return _composite_on_white(Image.fromarray(np.ascontiguousarray(rgba)))


def _pil_to_rgb(image: Image.Image, window: _Window) -> Image.Image:
    """Any PIL mode -> new RGB image (never returns `image` itself)."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _composite_on_white(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F") or (image.mode == "L" and window is not None):
        # 16/32-bit and float grey would be clipped at 255 by convert("RGB"); map them (and windowed 8-bit grey)
        # like arrays instead.
        return _array_to_rgb(np.asarray(image), window)
    return image.convert("RGB")


def _seek_frame(image: Image.Image, frame_index: int | None) -> None:
    """Move a multi-page PIL image (TIFF, GIF, ...) to `frame_index`; single-page images only have frame 0."""
    if frame_index is not None:
        _check_index("frame_index", frame_index, getattr(image, "n_frames", 1))
        image.seek(frame_index)


def _check_index(name: str, index: Any, size: int) -> int:
    """Return `index` as an int if it is an integer in `[0, size - 1]`, else raise naming the argument `name`."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise MedicalImageError(f"{name}: expected an integer in [0, {size - 1}], got {index!r}.")
    if not 0 <= index < size:
        raise MedicalImageError(f"{name}: {index} is out of range; expected an integer in [0, {size - 1}].")
    return int(index)


# ---------------------------------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------------------------------


def is_dicom_path(path: str | os.PathLike) -> bool:
    """True if `path` ends in `.dcm` / `.dicom` (any case) or is a file with the `DICM` magic at byte offset 128.

    The magic check makes suffix-less files (as exported by most PACS, e.g. `IM000001`) work. Never raises.
    """
    path = Path(path)
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            header = handle.read(132)
    except OSError:
        return False
    return len(header) == 132 and header[128:132] == b"DICM"


def _is_dicom_dataset(obj: Any) -> bool:
    # If pydicom has not been imported, `obj` cannot be one of its datasets: no need to import it.
    pydicom = sys.modules.get("pydicom")
    return pydicom is not None and isinstance(obj, pydicom.Dataset)


def _source_name(ds: Any) -> str:
    filename = getattr(ds, "filename", None)
    return f"'{filename}'" if isinstance(filename, (str, os.PathLike)) else "the DICOM dataset"


def _read_dicom(path: Path, stop_before_pixels: bool = False) -> Any:
    """`pydicom.dcmread` with errors turned into `MedicalImageError`.

    Files without the 128-byte preamble (raw datasets, old ACR-NEMA style) are read with `force=True`, and their
    missing transfer syntax is inferred from the encoding pydicom detected, so that the pixels can be decoded.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if len(ds) == 0 or (not stop_before_pixels and not _has_pixel_data(ds)):
                raise InvalidDicomError("no DICM preamble and no image data could be parsed") from None
            _infer_transfer_syntax(ds)
    except Exception as error:  # pydicom raises many different types for corrupt files
        raise MedicalImageError(
            f"image: could not read '{path}' as a DICOM file (expected a valid DICOM image): {error}"
        ) from error
    return ds


def _infer_transfer_syntax(ds: Any) -> None:
    import pydicom.uid

    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        return
    implicit_vr, little_endian = getattr(ds, "original_encoding", (None, None))
    if implicit_vr is None or little_endian is None:
        return
    if implicit_vr:
        syntax = pydicom.uid.ImplicitVRLittleEndian
    else:
        syntax = pydicom.uid.ExplicitVRLittleEndian if little_endian else pydicom.uid.ExplicitVRBigEndian
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = syntax


def _has_pixel_data(ds: Any) -> bool:
    return any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _as_dataset(ds: Any, stop_before_pixels: bool = False) -> Any:
    """Accept a pydicom `Dataset` or a path to a DICOM file."""
    if _is_dicom_dataset(ds):
        return ds
    if isinstance(ds, (str, os.PathLike)):
        return _read_dicom(_existing_file(ds, "ds"), stop_before_pixels=stop_before_pixels)
    raise MedicalImageError(f"ds: expected a pydicom Dataset or a path to a DICOM file, got {type(ds).__name__}.")


def _number_of_frames(ds: Any) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError) as error:
        raise MedicalImageError(
            f"image: {_source_name(ds)} has an invalid NumberOfFrames ({ds.get('NumberOfFrames')!r})."
        ) from error


def _frame_view(ds: Any, frame: int) -> Any:
    """Dataset carrying the Modality LUT and VOI LUT attributes that apply to `frame`.

    Enhanced multi-frame objects (enhanced CT / MR) keep RescaleSlope, WindowCenter, ... in the Shared and
    Per-frame Functional Groups rather than at the top level, where pydicom's `apply_modality_lut` and
    `apply_voi_lut` look. When the top level lacks them, copy them up (per-frame wins over shared) into a new
    dataset; `ds` itself is never modified.
    """
    import pydicom

    macros = []
    if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds:
        macros.append("PixelValueTransformationSequence")
    if "WindowCenter" not in ds and "VOILUTSequence" not in ds:
        macros.append("FrameVOILUTSequence")
    groups = []
    for keyword, index in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", frame)):
        sequence = ds.get(keyword)
        if sequence is not None and len(sequence) > index:
            groups.append(sequence[index])
    found = [group[macro][0] for group in groups for macro in macros if group.get(macro)]
    if not found:
        return ds
    view = pydicom.Dataset()
    for element in ds.group_dataset(0x0028):  # image pixel, modality LUT and VOI LUT modules
        view[element.tag] = element
    for item in found:
        for element in item:
            view[element.tag] = element
    # Needed by pydicom to know the byte order of OW-encoded LUT data.
    view.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
    return view


def _decode_frame(ds: Any, frame: int) -> np.ndarray:
    """Decode one frame; YBR colour is converted to RGB by pydicom (`convert_color_space`)."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, index=frame)
    except Exception as error:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if "missing dependencies" in str(error) or "no decoder" in str(error).lower():
            name = getattr(syntax, "name", syntax)
            raise MedicalImageError(
                f"image: cannot decode the pixel data of {_source_name(ds)} (transfer syntax {name!s}): "
                f"no installed decoder. {_DECODER_HINT} pydicom said: {error}"
            ) from error
        raise MedicalImageError(
            f"image: could not decode the pixel data of {_source_name(ds)} (expected a readable DICOM image): {error}"
        ) from error


def _colour_dicom_to_uint8(pixels: np.ndarray, ds: Any) -> np.ndarray:
    """Decoded colour pixels -> (H, W, 3) uint8 RGB (palette LUT applied, 16/32-bit samples rescaled)."""
    from pydicom.pixels import apply_color_lut

    if ds.PhotometricInterpretation == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        bits = 16 if pixels.dtype == np.uint16 else 8
    else:
        bits = int(ds.get("BitsStored", 8))
    if bits > 8:
        pixels = np.floor(pixels.astype(np.float64) / (2**bits - 1) * 255.0 + 0.5)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def dicom_to_array(ds: Any, frame_index: int | None = None) -> np.ndarray:
    """Decode one frame of a DICOM image.

    Args:
        ds (`pydicom.Dataset` or path): the DICOM object.
        frame_index (`int`, *optional*): frame of a multi-frame object, in `[0, NumberOfFrames - 1]`. Defaults to
            the middle frame (`NumberOfFrames // 2`), usually the most representative slice of a volume / cine.

    Returns:
        `np.ndarray`:
            - grayscale (MONOCHROME1/2): `(H, W)` float64 values after the Modality LUT (pydicom's
              `apply_modality_lut`: RescaleSlope/RescaleIntercept, e.g. Hounsfield units for CT, or the Modality LUT
              Sequence). No windowing and no MONOCHROME1 inversion is applied.
            - colour (RGB, YBR_*, PALETTE COLOR): `(H, W, 3)` uint8 RGB.

    Raises:
        `MedicalImageError`: no pixel data, `frame_index` out of range, undecodable or compressed without decoder.
    """
    from pydicom.pixels import apply_modality_lut

    ds = _as_dataset(ds)
    if not _has_pixel_data(ds):
        raise MedicalImageError(
            f"image: {_source_name(ds)} has no pixel data (Modality {ds.get('Modality')!s}); expected a DICOM image."
        )
    n_frames = _number_of_frames(ds)
    frame = n_frames // 2 if frame_index is None else _check_index("frame_index", frame_index, n_frames)
    pixels = _decode_frame(ds, frame)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if not photometric.startswith("MONOCHROME"):
        return _colour_dicom_to_uint8(pixels, ds)
    if pixels.ndim != 2:
        raise MedicalImageError(
            f"image: {_source_name(ds)} decoded to shape {pixels.shape}; expected one 2-D grayscale frame."
        )
    return np.asarray(apply_modality_lut(pixels, _frame_view(ds, frame)), dtype=np.float64)


def _header_voi_to_uint8(values: np.ndarray, view: Any, source: str) -> np.ndarray | None:
    """Apply the first VOI LUT / window stored in the header with pydicom's `apply_voi_lut`, then map to uint8.

    The output range, mapped linearly onto `[0, 255]`, is pydicom's `[y_min, y_max]` for windowing, and the smallest
    to largest LUT entry for a VOI LUT Sequence (not the nominal `2**bits - 1`: many 16-bit LUTs hold 12-bit values).
    Returns `None` when the header has no usable VOI information.
    """
    from pydicom.pixels import apply_voi_lut

    has_lut = bool(view.get("VOILUTSequence"))
    if not has_lut and (view.get("WindowCenter") is None or view.get("WindowWidth") is None):
        return None
    try:
        # Read the output range through pydicom itself rather than re-deriving its rules: feed it every LUT input,
        # or two values far outside any window.
        if has_lut:
            descriptor = view.VOILUTSequence[0].LUTDescriptor  # (number of entries, first mapped value, bits)
            n_entries, first_mapped = int(descriptor[0] or 2**16), int(descriptor[1])
            probe = np.arange(first_mapped, first_mapped + n_entries, dtype=np.int64)
            values = np.rint(values).astype(np.int64)  # a LUT is indexed by integers
        else:
            probe = np.array([-1e300, 1e300])
        with np.errstate(over="ignore"):  # SIGMOID's exp() overflows on the probe, harmlessly
            outputs = apply_voi_lut(probe, view, index=0)
        low, high = float(np.min(outputs)), float(np.max(outputs))
        mapped = apply_voi_lut(values, view, index=0)
    except Exception as error:  # malformed WindowCenter / WindowWidth / LUT descriptor
        raise MedicalImageError(
            f"window: the VOI LUT / window in the header of {source} is invalid ({error}); "
            "pass an explicit window=(center, width) or a preset name."
        ) from error
    if high <= low:
        return to_uint8_minmax(mapped)
    return _linear_to_uint8(mapped, low, high - low)


def _dicom_to_rgb(ds: Any, frame_index: int | None, window: _Window) -> Image.Image:
    values = dicom_to_array(ds, frame_index)
    if values.ndim == 3:
        # Colour: DICOM windows are defined for monochrome data only.
        return Image.fromarray(values)
    grey = None
    if window is None:
        frame = _number_of_frames(ds) // 2 if frame_index is None else int(frame_index)
        grey = _header_voi_to_uint8(values, _frame_view(ds, frame), _source_name(ds))
    if grey is None:
        grey = _gray_to_uint8(values, window)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1 stores dense structures dark; invert so that bone is white, as radiologists expect.
        grey = 255 - grey
    return _gray_to_image(grey)


def describe_dicom(ds: Any) -> dict[str, str | int | None]:
    """A few header fields useful to write captions / prompts.

    Args:
        ds (`pydicom.Dataset` or path): the DICOM object (for a path, pixel data is not read).

    Returns:
        `dict` with keys Modality, BodyPartExamined, SeriesDescription, StudyDescription, ViewPosition,
        PhotometricInterpretation, PatientID (`str`) and Rows, Columns, NumberOfFrames (`int`). Missing or empty
        elements (or unparsable numbers) are `None`.
    """
    ds = _as_dataset(ds, stop_before_pixels=True)
    description: dict[str, str | int | None] = {}
    for keyword in _DESCRIBE_TEXT_FIELDS:
        text = "" if ds.get(keyword) is None else str(ds.get(keyword)).strip()
        description[keyword] = text or None
    for keyword in _DESCRIBE_INT_FIELDS:
        try:
            value = ds.get(keyword)
            description[keyword] = int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            description[keyword] = None
    return description


# ---------------------------------------------------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------------------------------------------------


def is_nifti_path(path: str | os.PathLike) -> bool:
    """True if `path` ends in `.nii` or `.nii.gz` (any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def _is_nibabel_image(obj: Any) -> bool:
    return hasattr(obj, "get_fdata") and hasattr(obj, "affine") and hasattr(obj, "dataobj")


def nifti_to_array(img: Any, slice_index: int | None = None, axis: int = 2) -> np.ndarray:
    """Extract one upright 2-D slice from a NIfTI (or other nibabel) volume.

    The volume is first reoriented to the closest canonical RAS+ orientation (`nibabel.as_closest_canonical`), so
    array axis 0 runs patient left -> right, axis 1 posterior -> anterior and axis 2 inferior -> superior, whatever
    the file's storage order. `axis=2` therefore gives axial slices, `axis=1` coronal and `axis=0` sagittal.

    Display convention (that of DICOM viewers, i.e. radiological): the returned slice has
        - axial: anterior at the top, the patient's right on the image's left;
        - coronal: superior at the top, the patient's right on the image's left;
        - sagittal: superior at the top, anterior on the image's left.
    In all three cases this is `slice[::-1, ::-1].T` of the canonical slice.

    Args:
        img (`nibabel` image or path): a 3-D volume; for 4-D (or higher) data the first volume is used.
        slice_index (`int`, *optional*): index along `axis` in the canonical orientation; defaults to the middle
            slice (`size // 2`).
        axis (`int`, *optional*, defaults to 2): 0 (sagittal), 1 (coronal) or 2 (axial).

    Returns:
        `np.ndarray` of shape (rows, columns) and dtype float64 (scaled values, e.g. HU for CT).
    """
    import nibabel

    if isinstance(img, (str, os.PathLike)):
        img = _read_nifti(_existing_file(img, "img"))
    elif not _is_nibabel_image(img):
        raise MedicalImageError(f"img: expected a nibabel image or a path to a NIfTI file, got {type(img).__name__}.")
    if isinstance(axis, (bool, np.bool_)) or axis not in (0, 1, 2):
        raise MedicalImageError(f"axis: expected 0 (sagittal), 1 (coronal) or 2 (axial), got {axis!r}.")
    if len(img.shape) < 3:
        raise MedicalImageError(f"image: NIfTI data has shape {img.shape}; expected a 3-D or 4-D volume.")
    try:
        while len(img.shape) > 3:  # time series / multi-volume: keep the first volume (read lazily from disk)
            img = img.slicer[..., 0]
        volume = np.asanyarray(nibabel.as_closest_canonical(img).dataobj, dtype=np.float64)
    except Exception as error:
        raise MedicalImageError(f"image: could not read the NIfTI voxel data: {error}") from error
    index = volume.shape[axis] // 2 if slice_index is None else slice_index
    index = _check_index("slice_index", index, volume.shape[axis])
    canonical_slice = np.take(volume, index, axis=axis)
    # Remaining axes point to (+first, +second) = (right|anterior, anterior|superior). Reverse both so that they
    # point left/posterior and inferior, then transpose: rows run top (superior/anterior) -> bottom.
    return np.ascontiguousarray(canonical_slice[::-1, ::-1].T)


def _read_nifti(path: Path) -> Any:
    import nibabel

    try:
        return nibabel.load(path)
    except Exception as error:
        raise MedicalImageError(
            f"image: could not read '{path}' as a NIfTI file (expected a valid .nii / .nii.gz volume): {error}"
        ) from error


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------


def _existing_file(path: str | os.PathLike, name: str = "image") -> Path:
    """Check that `path` (the argument called `name`) is an existing file, not a directory."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MedicalImageError(f"{name}: file not found: '{path}'.")
    if path.is_dir():
        raise MedicalImageError(
            f"{name}: '{path}' is a directory; expected a single image file (pass one file of a DICOM series)."
        )
    return path


def _open_with_pil(path: Path, frame_index: int | None, window: _Window) -> Image.Image:
    try:
        image = Image.open(path)
    except Exception as error:
        raise MedicalImageError(
            f"image: could not read '{path}' (expected an image file readable by PIL such as PNG, JPEG, TIFF or "
            f"BMP, a DICOM file or a NIfTI .nii / .nii.gz volume): {error}"
        ) from error
    with image:
        _seek_frame(image, frame_index)
        try:
            image.load()
        except Exception as error:
            raise MedicalImageError(f"image: '{path}' is truncated or corrupt: {error}") from error
        return _pil_to_rgb(image, window)


def _tensor_to_numpy(obj: Any) -> np.ndarray | None:
    # A torch.Tensor can only exist if torch was imported by the caller, so never import it here.
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.Tensor):
        return None
    tensor = obj.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.numpy()


def load_image(
    image: Any,
    *,
    frame_index: int | None = None,
    slice_index: int | None = None,
    axis: int = 2,
    window: tuple[float, float] | str | None = None,
) -> Image.Image:
    """Load any supported medical or natural image as an 8-bit RGB `PIL.Image.Image`.

    Accepted inputs:
        - `PIL.Image.Image` of any mode. Transparency (RGBA, LA, P with transparency) is composited on white, as
          the original UniMedVL preprocessing does; 16/32-bit and float modes (I;16, I, F) are mapped like arrays.
        - `np.ndarray` (or `torch.Tensor`, converted with `.numpy()`) of shape (H, W), (H, W, 1), (H, W, 3) or
          (H, W, 4) (the 4th channel is alpha) and dtype bool, an integer or a float dtype.
        - a path (`str` / `os.PathLike`): DICOM (suffix `.dcm` / `.dicom` or `DICM` magic), NIfTI (`.nii`,
          `.nii.gz`), or anything `PIL.Image.open` reads (PNG, JPEG, TIFF, BMP, ...).
        - a `pydicom.Dataset` or a nibabel image.

    Grayscale mapping to 8 bit:
        - `window=(center, width)` or a fixed preset name: [`apply_window`] on the values (after the Modality LUT
          for DICOM, so CT presets are in HU).
        - `window="mr"`: 1st-99th percentile window.
        - `window=None` / `"auto"`: for DICOM the header's first VOI LUT / WindowCenter-WindowWidth with pydicom's
          `apply_voi_lut` semantics, else min-max; uint8 arrays / L images are kept; other data is min-max scaled.
          Note that a header window goes through DICOM's LINEAR function (`center - 0.5`, `width - 1`), which can
          differ by one grey level from passing the same numbers explicitly.
        - bool data maps to 0 / 255. DICOM MONOCHROME1 is inverted after windowing.
    Colour data is never windowed: 8-bit colour is kept, other colour dtypes are min-max scaled over all channels.

    Args:
        image: the input (see above).
        frame_index (`int`, *optional*): frame of a multi-frame DICOM (default: middle frame) or page of a
            multi-page PIL image such as a TIFF (default: first / current page).
        slice_index (`int`, *optional*): slice of a NIfTI volume along `axis` (default: middle slice). Only valid
            for NIfTI / nibabel inputs.
        axis (`int`, *optional*, defaults to 2): slicing axis of a NIfTI volume in canonical RAS+ orientation:
            0 sagittal, 1 coronal, 2 axial. See [`nifti_to_array`] for the display orientation.
        window (`tuple[float, float]` or `str`, *optional*): `(center, width)` or a key of `WINDOW_PRESETS`.

    Returns:
        `PIL.Image.Image` in mode "RGB" (a new object, never the input itself).

    Raises:
        `MedicalImageError` (a `ValueError`): for missing / unreadable files, directories, DICOMs without pixel data
        or without an installed decoder, unsupported array shapes or dtypes, bad window specs and out-of-range
        `frame_index` / `slice_index` / `axis`.
    """
    window = _resolve_window(window)

    if isinstance(image, (str, os.PathLike)):
        path = _existing_file(image)
        if is_nifti_path(path):
            _reject_frame_index(frame_index)
            return _nifti_to_rgb(_read_nifti(path), slice_index, axis, window)
        _reject_slice_index(slice_index)
        if is_dicom_path(path):
            return _dicom_to_rgb(_read_dicom(path), frame_index, window)
        return _open_with_pil(path, frame_index, window)

    if _is_nibabel_image(image):
        _reject_frame_index(frame_index)
        return _nifti_to_rgb(image, slice_index, axis, window)
    _reject_slice_index(slice_index)

    if _is_dicom_dataset(image):
        return _dicom_to_rgb(image, frame_index, window)

    if isinstance(image, Image.Image):
        previous = image.tell() if frame_index is not None else None
        try:
            _seek_frame(image, frame_index)
            return _pil_to_rgb(image, window)
        finally:
            if previous is not None:
                image.seek(previous)  # leave the caller's image as it was

    array = _tensor_to_numpy(image)
    if array is None and isinstance(image, np.ndarray):
        array = image
    if array is not None:
        if frame_index is not None:
            _check_index("frame_index", frame_index, 1)  # an array is a single frame
        return _array_to_rgb(array, window)

    raise MedicalImageError(
        f"image: unsupported input type {type(image).__name__}; expected a PIL image, a numpy array, a torch "
        "tensor, a file path, a pydicom Dataset or a nibabel image."
    )


def _reject_frame_index(frame_index: int | None) -> None:
    if frame_index is not None:
        raise MedicalImageError("frame_index: does not apply to NIfTI volumes; use slice_index (and axis) instead.")


def _reject_slice_index(slice_index: int | None) -> None:
    if slice_index is not None:
        raise MedicalImageError("slice_index: only applies to NIfTI volumes; use frame_index for multi-frame DICOM.")


def _nifti_to_rgb(img: Any, slice_index: int | None, axis: int, window: _Window) -> Image.Image:
    values = nifti_to_array(img, slice_index=slice_index, axis=axis)
    return _gray_to_image(_gray_to_uint8(values, window))


def load_images(images: Any, **options: Any) -> Any:
    """[`load_image`] on every image of a (possibly nested) list, keeping the nesting; `options` as for `load_image`."""
    if isinstance(images, (list, tuple)):
        return [load_images(image, **options) for image in images]
    return load_image(images, **options)
