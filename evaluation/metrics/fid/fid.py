"""Fréchet distance between the feature distributions of generated and real images (FID / gFID)."""

import io
import warnings
from pathlib import Path

import datasets
import evaluate
import numpy as np
import scipy.linalg

_CITATION = """\
@inproceedings{heusel2017fid,
  title     = {GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium},
  author    = {Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and Nessler, Bernhard and Hochreiter, Sepp},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2017}
}
@article{zhang2023biomedclip,
  title   = {BiomedCLIP: a multimodal biomedical foundation model pretrained from fifteen million scientific
             image-text pairs},
  author  = {Zhang, Sheng and Xu, Yanbo and Usuyama, Naoto and others},
  journal = {arXiv preprint arXiv:2303.00915},
  year    = {2023}
}
"""

_DESCRIPTION = """\
Fréchet distance between two Gaussians fitted to the features of generated images (`predictions`) and of real images
(`references`):

    FID = ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))

with sample means mu and unbiased sample covariances S (`numpy.cov`), in float64. The matrix square root is
`scipy.linalg.sqrtm`; when it is not finite (near-singular product) it is recomputed with 1e-6 added to both
covariance diagonals, and a complex result is accepted only when the imaginary parts of its diagonal are below 1e-3
(they are then dropped), otherwise `FrechetDistanceError` is raised.

Inputs are either feature vectors (one 1-D array per image) or, with `feature_extractor`, images:
- a callable: list of images -> (N, D) array of features, applied in batches of `batch_size`;
- "inception": the 2048-d pool features of the TensorFlow-ported FID Inception-v3, via the `pytorch-fid` package and its
  weights file `pt_inception-2015-12-05-6726825d.pth` in torch hub's checkpoint folder; images are H x W x 3 or
  H x W (grayscale, repeated to RGB), uint8 or floats in [0, 1];
- "biomedclip": BiomedCLIP image embeddings via `open_clip`, with the weights already in the local Hugging Face cache.
A built-in extractor that cannot be set up offline raises `FeatureExtractorUnavailableError` saying what is missing.

Both sets need at least 2 samples; with fewer than D + 1 samples in D dimensions the covariance is rank-deficient and
a `RankDeficientCovarianceWarning` is issued (FID is then strongly biased; use well above D + 1 samples, e.g. 2049+
for Inception features). Arrays are kept losslessly as `.npy` bytes in evaluate's Arrow cache.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of arrays): features (1-D) or images of the generated set.
    references (`list` of arrays): features (1-D) or images of the real set, as many as `predictions`.
    feature_extractor (`callable` or `str`, *optional*): `None` (inputs are features), a callable, "inception" or
        "biomedclip".
    batch_size (`int`, *optional*, defaults to 64): images per feature-extractor call.
    device (`str`, *optional*): torch device of a built-in extractor; CUDA when available, else CPU.

Returns:
    fid (`float`): the Fréchet distance.
    num_samples (`int`): samples per set.
    feature_dim (`int`): feature dimension D.

Examples:
    >>> fid = evaluate.load("fid")
    >>> rng = np.random.default_rng(0)
    >>> real, generated = rng.normal(size=(500, 4)), rng.normal(1.0, size=(500, 4))
    >>> round(fid.compute(predictions=list(generated), references=list(real))["fid"])
    4
"""

INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
SQRTM_OFFSET = 1e-6
IMAGINARY_TOLERANCE = 1e-3


class InputLengthError(ValueError):
    """The generated and real sets differ in size."""


class EmptyInputError(ValueError):
    """There is no sample to score."""


class TooFewSamplesError(ValueError):
    """A set has fewer than 2 samples, so it has no covariance."""


class NonFiniteFeatureError(ValueError):
    """A feature vector holds NaN or infinite values."""


class FeatureShapeError(ValueError):
    """Features are not (N, D) with the same D on both sides."""


class FeatureExtractorUnavailableError(ValueError):
    """A built-in feature extractor cannot be set up on this machine."""


class FrechetDistanceError(ValueError):
    """The covariance product has no usable real square root."""


class RankDeficientCovarianceWarning(UserWarning):
    """Fewer samples than feature dimensions + 1: the sample covariance is singular."""


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


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), with the usual guards on the square root."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = SQRTM_OFFSET * np.eye(sigma1.shape[0])
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > IMAGINARY_TOLERANCE:
            raise FrechetDistanceError(
                f"The square root of the covariance product has imaginary parts up to {imaginary}."
            )
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_statistics(features: np.ndarray, name: str):
    """Mean and unbiased covariance of (N, D) features, after checking there are enough finite samples."""
    num_samples, dim = features.shape
    if num_samples < 2:
        raise TooFewSamplesError(f"The {name} set has {num_samples} sample; FID needs at least 2 per set.")
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise NonFiniteFeatureError(f"The {name} features hold NaN or infinite values (first at sample {bad_rows[0]}).")
    if num_samples < dim + 1:
        warnings.warn(
            f"The {name} set has {num_samples} samples of {dim}-d features, so its covariance is rank-deficient "
            f"(rank <= {num_samples - 1} < {dim}) and FID is unreliable; use at least {dim + 1} samples per set.",
            RankDeficientCovarianceWarning,
            stacklevel=2,
        )
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def stack_features(features, name: str) -> np.ndarray:
    """Stack per-sample 1-D feature vectors into an (N, D) float64 array."""
    shapes = {feature.shape for feature in features}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise FeatureShapeError(
            f"The {name} features must be 1-D vectors of one length (got shapes {sorted(shapes)}); pass images with a "
            "feature_extractor instead."
        )
    return np.stack(features).astype(np.float64)


def extract_features(images, extractor, batch_size: int, name: str) -> np.ndarray:
    """Run `extractor` over `images` in batches and return (N, D) float64 features."""
    batches = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = np.asarray(extractor(chunk))
        if batch.ndim != 2 or batch.shape[0] != len(chunk):
            raise FeatureShapeError(
                f"The feature extractor must map {len(chunk)} {name} images to ({len(chunk)}, D) features; "
                f"got {batch.shape}."
            )
        batches.append(batch)
    return np.concatenate(batches).astype(np.float64)


def _torch_device(device):
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _to_rgb_unit_float(image: np.ndarray) -> np.ndarray:
    """H x W or H x W x {1, 3} uint8 / [0, 1] float image -> H x W x 3 float32 in [0, 1]."""
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise FeatureShapeError(f"Images must be H x W or H x W x 1/3 (channels last); got shape {image.shape}.")
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def inception_extractor(device=None):
    """FID Inception-v3 pool features (2048-d) from `pytorch-fid`, with its weights already on disk."""
    try:
        import torch
        from pytorch_fid.inception import InceptionV3
    except ImportError as error:
        raise FeatureExtractorUnavailableError(
            "feature_extractor='inception' needs the pytorch-fid package (`pip install pytorch-fid`)."
        ) from error
    weights = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    if not weights.is_file():
        raise FeatureExtractorUnavailableError(
            f"The FID Inception weights are not at {weights}. Copy {INCEPTION_WEIGHTS} (from the pytorch-fid GitHub "
            "releases, or from a machine where pytorch-fid has run once) there, or pass your own feature_extractor."
        )
    device = _torch_device(device)
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()

    def extract(images):
        batch = torch.from_numpy(np.stack([_to_rgb_unit_float(image) for image in images])).permute(0, 3, 1, 2)
        with torch.no_grad():
            return model(batch.to(device))[0].flatten(1).cpu().numpy()

    return extract


def biomedclip_extractor(device=None):
    """BiomedCLIP image embeddings (before normalisation) via `open_clip`, from the local Hugging Face cache."""
    try:
        import open_clip
        import torch
        from PIL import Image
    except ImportError as error:
        raise FeatureExtractorUnavailableError(
            "feature_extractor='biomedclip' needs the open_clip package (`pip install open_clip_torch`)."
        ) from error
    try:
        model, preprocess = open_clip.create_model_from_pretrained(BIOMEDCLIP)
    except (OSError, ValueError, RuntimeError) as error:
        raise FeatureExtractorUnavailableError(
            f"BiomedCLIP ({BIOMEDCLIP}) could not be loaded: {error}. Download it once while online so that it is in "
            "the Hugging Face cache, or pass your own feature_extractor."
        ) from error
    device = _torch_device(device)
    model = model.to(device).eval()

    def extract(images):
        pixels = [Image.fromarray(np.uint8(np.round(_to_rgb_unit_float(image) * 255))) for image in images]
        batch = torch.stack([preprocess(pixel) for pixel in pixels]).to(device)
        with torch.no_grad():
            return model.encode_image(batch).float().cpu().numpy()

    return extract


BUILTIN_EXTRACTORS = {"inception": inception_extractor, "biomedclip": biomedclip_extractor}


def resolve_extractor(feature_extractor, device):
    """Turn the `feature_extractor` argument into a callable (or `None` for precomputed features)."""
    if feature_extractor is None or callable(feature_extractor):
        return feature_extractor
    if feature_extractor not in BUILTIN_EXTRACTORS:
        raise FeatureExtractorUnavailableError(
            f"Unknown feature_extractor {feature_extractor!r}; use a callable or one of {sorted(BUILTIN_EXTRACTORS)}."
        )
    return BUILTIN_EXTRACTORS[feature_extractor](device)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FID(evaluate.Metric):
    """Fréchet distance between generated and real feature distributions."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("binary"), "references": datasets.Value("binary")}
            ),
            reference_urls=["https://arxiv.org/abs/1706.08500", "https://github.com/mseitzer/pytorch-fid"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add generated and real samples, stored as `.npy` bytes, after checking that the sets have equal size."""
        if predictions is not None and references is not None and len(predictions) != len(references):
            raise InputLengthError(
                f"Got {len(predictions)} generated but {len(references)} real samples; this module compares sets of "
                "equal size (subsample the larger one)."
            )
        super().add_batch(predictions=encode_arrays(predictions), references=encode_arrays(references), **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one generated and one real sample, stored as `.npy` bytes."""
        super().add(prediction=encode_array(prediction), reference=encode_array(reference), **kwargs)

    def _compute(self, predictions, references, feature_extractor=None, batch_size=64, device=None):
        if not references:
            raise EmptyInputError("No samples to score: predictions and references are empty.")
        extractor = resolve_extractor(feature_extractor, device)
        features = {}
        for name, blobs in (("generated", predictions), ("real", references)):
            arrays = [decode_array(blob) for blob in blobs]
            features[name] = (
                stack_features(arrays, name)
                if extractor is None
                else extract_features(arrays, extractor, batch_size, name)
            )
        if features["generated"].shape[1] != features["real"].shape[1]:
            raise FeatureShapeError(
                f"Generated features are {features['generated'].shape[1]}-d but real features are "
                f"{features['real'].shape[1]}-d."
            )
        mu_g, sigma_g = gaussian_statistics(features["generated"], "generated")
        mu_r, sigma_r = gaussian_statistics(features["real"], "real")
        return {
            "fid": frechet_distance(mu_g, sigma_g, mu_r, sigma_r),
            "num_samples": len(predictions),
            "feature_dim": int(features["real"].shape[1]),
        }
