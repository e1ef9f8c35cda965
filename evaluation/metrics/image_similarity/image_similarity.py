"""Full-reference image similarity: PSNR and SSIM (scikit-image), per image pair then averaged."""

import io

import datasets
import evaluate
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

_CITATION = """\
@article{wang2004ssim,
  title   = {Image Quality Assessment: From Error Visibility to Structural Similarity},
  author  = {Wang, Zhou and Bovik, Alan C. and Sheikh, Hamid R. and Simoncelli, Eero P.},
  journal = {IEEE Transactions on Image Processing},
  volume  = {13},
  number  = {4},
  pages   = {600--612},
  year    = {2004}
}
"""

_DESCRIPTION = """\
PSNR and SSIM between generated and reference images, as reported for medical image-to-image tasks (super-resolution,
modality translation, virtual staining). Each pair is scored on its own and the scores are averaged.

- Data range L: `data_range` if given, else inferred from all images together: uint8 images -> 255; floating-point
  images whose values all lie in [0, 1] -> 1.0, else in [-1, 1] -> 2.0. Anything else (other integer types such as
  16-bit CT, mixed dtypes, floats outside [-1, 1]) needs an explicit `data_range`.
- PSNR = 10 log10(L^2 / MSE) over all pixels and channels (scikit-image `peak_signal_noise_ratio`); identical images
  give `inf`, and then the mean is `inf` too.
- SSIM: scikit-image `structural_similarity` with the settings of Wang et al. (2004): 11x11 Gaussian window with
  sigma = 1.5 (`gaussian_weights=True`), population covariances (`use_sample_covariance=False`), K1 = 0.01,
  K2 = 0.03, C1 = (K1 L)^2, C2 = (K2 L)^2. With `channel_axis` the SSIM of each channel is averaged; without it every
  axis is spatial (a 3-D array is scored as a volume). Both sides of every image must be at least 11 pixels long.
  SSIM depends on the intensity offset: images in [-1, 1] score differently from the same images mapped to [0, 1],
  so map them to [0, 1] first when comparing with numbers computed on [0, 1] or uint8 images.

Images may be numpy arrays, PIL images or CPU tensors of any shape and dtype; they are kept losslessly as `.npy`
bytes in evaluate's Arrow cache.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of arrays): generated images.
    references (`list` of arrays): reference images, each of the same shape as its prediction.
    data_range (`float`, *optional*): L, the distance between the smallest and largest possible pixel value.
    channel_axis (`int`, *optional*): axis of the colour channels (e.g. -1 for H x W x 3); `None` for grayscale.

Returns:
    psnr (`float`): mean PSNR in dB.
    ssim (`float`): mean SSIM.
    psnr_per_image, ssim_per_image (`list` of `float`): the score of each pair.
    data_range (`float`): the data range used.

Examples:
    >>> similarity = evaluate.load("image_similarity")
    >>> reference = np.zeros((16, 16), dtype=np.uint8)
    >>> similarity.compute(predictions=[reference + 1], references=[reference])["psnr"]
    48.1308036086791
"""

SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}


class InputLengthError(ValueError):
    """Predictions and references do not pair up one to one."""


class EmptyInputError(ValueError):
    """There is no image pair to score."""


class ImageShapeError(ValueError):
    """A prediction and its reference differ in shape."""


class NonFiniteImageError(ValueError):
    """An image holds NaN or infinite values."""


class DataRangeError(ValueError):
    """The data range cannot be inferred from the images' dtype and values."""


def encode_array(array) -> bytes:
    """Serialise an array-like losslessly (shape and dtype included) as `.npy` bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def encode_arrays(arrays):
    """`encode_array` over a batch; `None` (no batch) passes through."""
    return None if arrays is None else [encode_array(array) for array in arrays]


def decode_array(blob: bytes) -> np.ndarray:
    """Inverse of `encode_array`."""
    return np.load(io.BytesIO(blob), allow_pickle=False)


def infer_data_range(images) -> float:
    """Data range implied by the images: uint8 -> 255, floats in [0, 1] -> 1.0, floats in [-1, 1] -> 2.0."""
    dtypes = {image.dtype for image in images}
    if dtypes == {np.dtype(np.uint8)}:
        return 255.0
    if all(np.issubdtype(dtype, np.floating) for dtype in dtypes):
        low = min(float(image.min()) for image in images)
        high = max(float(image.max()) for image in images)
        if 0.0 <= low and high <= 1.0:
            return 1.0
        if -1.0 <= low and high <= 1.0:
            return 2.0
        raise DataRangeError(
            f"Floating-point images span [{low}, {high}], outside [0, 1] and [-1, 1]; pass data_range explicitly."
        )
    names = ", ".join(sorted(str(dtype) for dtype in dtypes))
    raise DataRangeError(f"Cannot infer the data range of images of dtype {names}; pass data_range explicitly.")


def _check_pairs(predictions, references):
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        if prediction.shape != reference.shape:
            raise ImageShapeError(
                f"Image pair {index}: prediction has shape {prediction.shape} "
                f"but reference has shape {reference.shape}."
            )
        for side, image in (("prediction", prediction), ("reference", reference)):
            if not np.isfinite(image).all():
                raise NonFiniteImageError(f"The {side} of image pair {index} holds NaN or infinite values.")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ImageSimilarity(evaluate.Metric):
    """Mean PSNR and SSIM between generated and reference images."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("binary"), "references": datasets.Value("binary")}
            ),
            reference_urls=["https://scikit-image.org/docs/stable/api/skimage.metrics.html"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of image pairs, stored as `.npy` bytes, after checking that they pair up."""
        if predictions is not None and references is not None and len(predictions) != len(references):
            raise InputLengthError(f"Got {len(predictions)} predictions but {len(references)} references.")
        super().add_batch(predictions=encode_arrays(predictions), references=encode_arrays(references), **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one image pair, stored as `.npy` bytes."""
        super().add(prediction=encode_array(prediction), reference=encode_array(reference), **kwargs)

    def _compute(self, predictions, references, data_range=None, channel_axis=None):
        if not references:
            raise EmptyInputError("No image pairs to score: predictions and references are empty.")
        predictions = [decode_array(blob) for blob in predictions]
        references = [decode_array(blob) for blob in references]
        _check_pairs(predictions, references)
        if data_range is None:
            data_range = infer_data_range(predictions + references)

        psnr = [
            float(peak_signal_noise_ratio(reference, prediction, data_range=data_range))
            for prediction, reference in zip(predictions, references, strict=True)
        ]
        ssim = [
            float(
                structural_similarity(
                    reference, prediction, data_range=data_range, channel_axis=channel_axis, **SSIM_SETTINGS
                )
            )
            for prediction, reference in zip(predictions, references, strict=True)
        ]
        return {
            "psnr": float(np.mean(psnr)),
            "ssim": float(np.mean(ssim)),
            "psnr_per_image": psnr,
            "ssim_per_image": ssim,
            "data_range": float(data_range),
        }
