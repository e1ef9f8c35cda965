# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Pure image helpers of the UniMedVL-Nano builder: volume slicing, windowing, square resizing, crops and tiles.

Conventions:
    - Values -> 8 bit goes through [`medical_io.load_image`] / [`medical_io.apply_window`] (CT presets in HU, "mr" =
      1st-99th percentile), so the data set is rendered exactly like images given to the model at inference.
    - Volume slices use [`medical_io.nifti_to_array`]'s radiological display convention (axial: anterior up, patient
      right on the left; coronal/sagittal: superior up).
    - Every stored image is `size` x `size` RGB: the image is scaled, keeping its *physical* aspect ratio (pixel
      spacing), so that its longer side is `size`, then centred on a black square. Shrinking uses area averaging
      (`BOX`), enlarging bicubic interpolation.
"""

import io
import math

import numpy as np
from PIL import Image

from ...modeling.medical_io import load_image, nifti_to_array


PLANE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


# ---------------------------------------------------------------------------------------------------------------------
# Volumes
# ---------------------------------------------------------------------------------------------------------------------


def canonical_volume(img):
    """First 3-D volume of a nibabel image, reoriented to closest canonical RAS+, with float64 voxels in memory.

    Slicing the result with [`volume_slice`] then costs no copy of the volume per slice.
    """
    import nibabel

    while len(img.shape) > 3:
        img = img.slicer[..., 0]
    img = nibabel.as_closest_canonical(img)
    data = np.asanyarray(img.dataobj, dtype=np.float64)
    return nibabel.Nifti1Image(data, img.affine)


def volume_slice(volume, plane: str, index: int) -> tuple[np.ndarray, tuple[float, float]]:
    """One displayed 2-D slice of a canonical volume and its pixel spacing `(row_mm, col_mm)`.

    Args:
        volume: a nibabel image from [`canonical_volume`].
        plane: "axial", "coronal" or "sagittal".
        index: slice index along the plane's canonical axis.
    """
    axis = PLANE_AXES[plane]
    values = nifti_to_array(volume, slice_index=index, axis=axis)
    zooms = volume.header.get_zooms()[:3]
    first, second = (zooms[i] for i in range(3) if i != axis)
    # nifti_to_array returns the canonical slice transposed: rows follow the second remaining axis.
    return values, (float(second), float(first))


def informative_indices(data: np.ndarray, axis: int, count: int, threshold: float,
                        min_fraction: float = 0.5) -> list[int]:
    """Up to `count` evenly spaced slice indices along `axis` among the slices with enough foreground.

    A slice qualifies when its number of voxels above `threshold` is at least `min_fraction` times that of the
    fullest slice, which drops the near-empty slices at the edges of a volume.
    """
    other_axes = tuple(i for i in range(data.ndim) if i != axis)
    foreground = (data > threshold).sum(axis=other_axes)
    candidates = np.flatnonzero(foreground >= min_fraction * foreground.max())
    return [int(i) for i in evenly_spaced(candidates.tolist(), count)]


def evenly_spaced(items: list, count: int) -> list:
    """`count` items spread evenly over `items` (all of them when `count >= len(items)`), first and last included."""
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[len(items) // 2]]
    return [items[round(k * (len(items) - 1) / (count - 1))] for k in range(count)]


def percentile_window(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """`(center, width)` spanning the `low`-th to `high`-th percentile of `values` (e.g. a whole MR volume)."""
    lower, upper = (float(v) for v in np.percentile(values, [low, high]))
    width = max(upper - lower, 1e-6)
    return lower + width / 2.0, width


def render(values: np.ndarray, window) -> Image.Image:
    """Grayscale values -> RGB image via [`medical_io.load_image`] with `window` (preset name or (center, width))."""
    return load_image(np.asarray(values, dtype=np.float64), window=window)


# ---------------------------------------------------------------------------------------------------------------------
# 2-D images
# ---------------------------------------------------------------------------------------------------------------------


def to_square(image: Image.Image, size: int, spacing: tuple[float, float] = (1.0, 1.0)) -> Image.Image:
    """Aspect-preserving resize so the longer physical side is `size`, centred on a black `size` x `size` square.

    Args:
        image: RGB image.
        size: output side in pixels.
        spacing: `(row_mm, col_mm)` pixel spacing; the physical aspect ratio is what is preserved.
    """
    height_mm, width_mm = image.height * spacing[0], image.width * spacing[1]
    scale = size / max(height_mm, width_mm)
    width = max(1, min(size, round(width_mm * scale)))
    height = max(1, min(size, round(height_mm * scale)))
    shrinking = width <= image.width and height <= image.height
    resized = image.resize((width, height), Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(resized, ((size - width) // 2, (size - height) // 2))
    return canvas


def square_crop(image: Image.Image, scale: float, center_x: float, center_y: float) -> Image.Image:
    """Square crop of side `scale * min(width, height)` centred at the fractional position `(center_x, center_y)`,
    shifted inside the image where needed."""
    side = max(1, round(scale * min(image.size)))
    left = min(max(round(center_x * image.width - side / 2), 0), image.width - side)
    top = min(max(round(center_y * image.height - side / 2), 0), image.height - side)
    return image.crop((left, top, left + side, top + side))


def has_content(image: Image.Image, level: int = 24, min_fraction: float = 0.15) -> bool:
    """True when at least `min_fraction` of the pixels are brighter than `level` in some channel (drops crops of
    the black margins of ultrasound screens and the like)."""
    return bool((np.asarray(image.convert("RGB")).max(axis=-1) > level).mean() >= min_fraction)


def tissue_fraction(tile: Image.Image, white_level: int = 215) -> float:
    """Fraction of pixels of a bright-field microscopy tile that are not background (mean RGB below `white_level`)."""
    return float((np.asarray(tile, dtype=np.float32).mean(axis=-1) < white_level).mean())


def tissue_tiles(image: Image.Image, tile: int, count: int, min_tissue: float = 0.6) -> list[tuple[int, int]]:
    """Top-left corners of up to `count` non-overlapping `tile` x `tile` tiles with enough tissue, evenly spread
    over the qualifying tiles in row-major order."""
    corners = [(x, y) for y in range(0, image.height - tile + 1, tile) for x in range(0, image.width - tile + 1, tile)]
    kept = [(x, y) for x, y in corners if tissue_fraction(image.crop((x, y, x + tile, y + tile))) >= min_tissue]
    return evenly_spaced(kept, count)


def green_channel(image: Image.Image) -> Image.Image:
    """The green channel as a grayscale RGB image (the usual "red-free" rendering of a colour fundus photograph)."""
    green = image.getchannel("G")
    return Image.merge("RGB", (green, green, green))


def is_colour(image: Image.Image, spread: int = 24, min_fraction: float = 0.01) -> bool:
    """True when at least `min_fraction` of the pixels have channels differing by more than `spread` grey levels."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    channel_spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    return bool((channel_spread > spread).mean() >= min_fraction)


def low_resolution_copy(image: Image.Image, factor: int = 2) -> Image.Image:
    """The image shrunk `factor` times (area averaging) and enlarged back (bicubic): the input of a
    super-resolution pair whose target is `image`."""
    small = image.resize((math.ceil(image.width / factor), math.ceil(image.height / factor)), Image.Resampling.BOX)
    return small.resize(image.size, Image.Resampling.BICUBIC)


def png_bytes(image: Image.Image) -> bytes:
    """Deterministic PNG encoding of an RGB image (no metadata)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


__all__ = [
    "PLANE_AXES", "canonical_volume", "evenly_spaced", "green_channel", "has_content", "informative_indices",
    "is_colour", "low_resolution_copy", "percentile_window", "png_bytes", "render", "square_crop", "tissue_fraction",
    "tissue_tiles", "to_square", "volume_slice",
]
