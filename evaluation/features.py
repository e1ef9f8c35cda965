# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Image features for FID: the `fid` metric's built-in extractors behind one fixed input size, plus `pixels`, a tiny
deterministic extractor for smoke tests.
"""

import numpy as np


# Every image is resized (bicubic, RGB) to a square of this side before feature extraction, so that sets of mixed
# sizes can be batched: 299 is the FID Inception's own input size, 224 BiomedCLIP's.
INPUT_SIZES = {"inception": 299, "biomedclip": 224, "pixels": 64}
FEATURE_EXTRACTORS = tuple(INPUT_SIZES)
PIXEL_GRID = 4


def pixel_features(images) -> np.ndarray:
    """The `pixels` smoke-test extractor: mean grey level in [0, 1] of each cell of a 4 x 4 grid (16-d).

    It only checks that the FID plumbing runs; its numbers say nothing about image quality and must not be reported.
    """
    features = []
    for image in images:
        grey = np.asarray(image, dtype=np.float64).mean(axis=-1) / 255.0
        cells = grey.reshape(PIXEL_GRID, grey.shape[0] // PIXEL_GRID, PIXEL_GRID, grey.shape[1] // PIXEL_GRID)
        features.append(cells.mean(axis=(1, 3)).ravel())
    return np.stack(features)


class FeatureExtractor:
    """`extractor(list of PIL images) -> (N, D) float64 features`, for `name` in [`FEATURE_EXTRACTORS`].

    Args:
        name: `"inception"` (FID Inception-v3, 2048-d; needs pytorch-fid and its weights on disk), `"biomedclip"`
            (BiomedCLIP image embeddings; needs open_clip and the weights in the Hugging Face cache) or `"pixels"`.
        fid_module: the module of the loaded `fid` metric, which provides the built-in extractors.
        device: torch device of a built-in extractor (default: CUDA when available).

    Raises:
        FeatureExtractorUnavailableError (the `fid` metric's): the extractor cannot be set up offline.
    """

    def __init__(self, name: str, fid_module, device=None):
        if name not in INPUT_SIZES:
            raise fid_module.FeatureExtractorUnavailableError(
                f"Unknown feature extractor {name!r}; choose one of {', '.join(FEATURE_EXTRACTORS)}."
            )
        self.name = name
        self.size = INPUT_SIZES[name]
        if name == "pixels":
            self._extract = pixel_features
            return
        try:
            self._extract = fid_module.resolve_extractor(name, device)
        except fid_module.FeatureExtractorUnavailableError as error:
            raise fid_module.FeatureExtractorUnavailableError(
                f"{error} Set it up, or choose another --feature-extractor ({', '.join(FEATURE_EXTRACTORS)}; "
                "'pixels' is for smoke tests only)."
            ) from error

    def __call__(self, images) -> np.ndarray:
        from PIL import Image

        arrays = [
            np.asarray(image.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC))
            for image in images
        ]
        return np.asarray(self._extract(arrays), dtype=np.float64)


__all__ = ["FEATURE_EXTRACTORS", "INPUT_SIZES", "FeatureExtractor", "pixel_features"]
