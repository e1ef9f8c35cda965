# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Image processor for UniMedVL: the release's aspect-preserving resize rules, [-1, 1] normalisation and NaViT
patchification, on any image a clinician may hand over (PIL, arrays, file paths, DICOM, NIfTI)."""

import os

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs

from .medical_io import load_images


# Resize presets of the release, as (max long side, min short side, stride, max pixels).
UNDERSTANDING_RESIZE = (980, 378, 14, 2_007_040)  # VQA / report path (`Bagel.chat`, data/default.yaml `vlm_sft`)
GENERATION_VAE_RESIZE = (1024, 32, 16, 14 * 14 * 9 * 1024)  # conditioning image for the VAE, and output sizes
GENERATION_VIT_RESIZE = (980, 387, 14, 14 * 14 * 9 * 1024)  # the same image, VAE-resized first, for the ViT


def fit_image_size(
    width: int, height: int, max_size: int, min_size: int, stride: int, max_pixels: int, num_images: int = 1
) -> tuple[int, int]:
    """Target `(width, height)` under the release's rules, reproduced exactly (Python `round`, ties to even):

    1. scale = min(max_size / long side, 1), then max(scale, min_size / short side);
    2. each side → round(side·scale), then snapped to the nearest multiple of `stride` (at least one stride);
    3. if the area exceeds `max_pixels / num_images`, both sides are scaled again by the AREA ratio (not its square
       root: a quirk of the release kept for parity) and snapped;
    4. if the long side still exceeds `max_size`, both sides are scaled down to it and snapped.
    """

    def snap(value: float) -> int:
        return max(stride, int(round(value / stride) * stride))

    def scaled(w: int, h: int, scale: float) -> tuple[int, int]:
        return snap(round(w * scale)), snap(round(h * scale))

    scale = min(max_size / max(width, height), 1.0)
    scale = max(scale, min_size / min(width, height))
    new_width, new_height = scaled(width, height, scale)
    if new_width * new_height > max_pixels / num_images:
        new_width, new_height = scaled(new_width, new_height, max_pixels / num_images / (new_width * new_height))
    if max(new_width, new_height) > max_size:
        new_width, new_height = scaled(new_width, new_height, max_size / max(new_width, new_height))
    return new_width, new_height


def patchify(image: np.ndarray, patch_size: int) -> np.ndarray:
    """`(C, H, W)` → `(H/p · W/p, p · p · C)`: patches row-major, each flattened as (row, column, channel)."""
    channels, height, width = image.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = image.reshape(channels, grid_h, patch_size, grid_w, patch_size)
    return patches.transpose(1, 3, 2, 4, 0).reshape(grid_h * grid_w, patch_size * patch_size * channels)


class UniMedVLImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    max_pixels (`int`): Largest area after resizing, shared by the images of one call (`num_images`).
    patch_size (`int`): ViT patch side; image sides are snapped to multiples of it.
    frame_index (`int`): Frame of multi-frame DICOMs (default: middle frame).
    slice_index (`int`): Slice of NIfTI volumes (default: middle slice).
    window (`str` or `tuple`): Display window for DICOM/NIfTI/16-bit inputs: a preset name or `(center, width)`.
    generation_vae_resize (`list[int]`): Image generation: how a conditioning image is resized for the VAE (and how
        the default output size is derived), as [longest side, shortest side, stride, max pixels].
    generation_vit_resize (`list[int]`): Image generation: how that VAE-sized image is resized again for the ViT.
    """

    max_pixels: int
    patch_size: int
    frame_index: int | None
    slice_index: int | None
    window: str | tuple | list | None
    generation_vae_resize: list[int] | tuple[int, ...]
    generation_vit_resize: list[int] | tuple[int, ...]


class UniMedVLImageProcessor(PilBackend):
    r"""
    Turns images into packed ViT patches for UniMedVL.

    Every input goes through [`~medical_io.load_image`] first (PNG/JPEG paths, PIL images of any mode, 8/16-bit or float
    arrays, DICOM files or datasets with their modality/VOI LUTs, NIfTI volumes), giving an 8-bit RGB image. It is then
    resized with [`fit_image_size`] (bicubic, aspect preserved, sides multiple of `patch_size`), mapped to [-1, 1] and
    cut into `patch_size`² patches.

    Defaults are the release's understanding (VQA) path: `size={"longest_edge": 980, "shortest_edge": 378}`,
    `patch_size=14`, `max_pixels=2_007_040`.

    Returns `pixel_values` of shape `(total_patches, 3 · patch_size²)` (all images concatenated) and `image_grid_hw` of
    shape `(num_images, 2)` (patch rows and columns of each image).
    """

    model_input_names = ["pixel_values", "image_grid_hw"]
    valid_kwargs = UniMedVLImageProcessorKwargs
    resample = PILImageResampling.BICUBIC
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    size = {"longest_edge": UNDERSTANDING_RESIZE[0], "shortest_edge": UNDERSTANDING_RESIZE[1]}
    default_to_square = False
    patch_size = UNDERSTANDING_RESIZE[2]
    max_pixels = UNDERSTANDING_RESIZE[3]
    frame_index = None
    slice_index = None
    window = None
    generation_vae_resize = list(GENERATION_VAE_RESIZE)
    generation_vit_resize = list(GENERATION_VIT_RESIZE)

    def fetch_images(self, images, frame_index=None, slice_index=None, window=None):
        """Load every image of a (possibly nested) list as an 8-bit RGB PIL image; see [`medical_io.load_image`]."""
        return load_images(images, frame_index=frame_index, slice_index=slice_index, window=window)

    def _prepare_image_like_inputs(self, images, *args, frame_index=None, slice_index=None, window=None, **kwargs):
        flat = []

        def collect(item):
            if isinstance(item, (list, tuple)):
                for element in item:
                    collect(element)
            else:
                flat.append(item)

        collect(self.fetch_images(images, frame_index, slice_index, window))
        if not flat:
            raise ValueError("`images` is empty: pass at least one image.")
        return flat

    def resize_image(self, image: Image.Image, max_size: int, min_size: int, stride: int, max_pixels: int,
                     num_images: int = 1) -> Image.Image:
        """Bicubic resize of an RGB PIL image to [`fit_image_size`]'s target."""
        width, height = fit_image_size(image.width, image.height, max_size, min_size, stride, max_pixels, num_images)
        if (width, height) == image.size:
            return image
        return image.resize((width, height), resample=self.resample)

    def to_normalized_array(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image → `(3, H, W)` float32 in [-1, 1] (the release's ToTensor + Normalize(0.5, 0.5))."""
        array = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
        array = self.rescale(array.astype(np.float32), self.rescale_factor)
        return self.normalize(array, self.image_mean, self.image_std).astype(np.float32)

    def _preprocess(
        self,
        images: list[Image.Image],
        do_resize: bool = True,
        size=None,
        max_pixels: int | None = None,
        patch_size: int | None = None,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        patches, grids = [], []
        for image in images:
            if do_resize:
                image = self.resize_image(image, size.longest_edge, size.shortest_edge, patch_size, max_pixels)
            if image.width % patch_size or image.height % patch_size:
                raise ValueError(
                    f"With `do_resize=False` image sides must be multiples of `patch_size`={patch_size}, "
                    f"got {image.width}x{image.height}."
                )
            patches.append(patchify(self.to_normalized_array(image), patch_size))
            grids.append((image.height // patch_size, image.width // patch_size))
        data = {"pixel_values": np.concatenate(patches), "image_grid_hw": np.asarray(grids, dtype=np.int64)}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def num_image_tokens(self, width: int, height: int) -> int:
        """Number of `<|image_pad|>` tokens an image of this size becomes with the defaults (without the markers)."""
        stride = self.patch_size
        new_width, new_height = fit_image_size(
            width, height, self.size.longest_edge, self.size.shortest_edge, stride, self.max_pixels
        )
        return (new_width // stride) * (new_height // stride)


__all__ = ["UniMedVLImageProcessor", "fit_image_size", "patchify"]
