"""Image-text alignment score: cosine similarity of image and text embeddings (BiomedCLIP by default)."""

import io

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{hessel2021clipscore,
  title     = {CLIPScore: A Reference-free Evaluation Metric for Image Captioning},
  author    = {Hessel, Jack and Holtzman, Ari and Forbes, Maxwell and Le Bras, Ronan and Choi, Yejin},
  booktitle = {Proceedings of EMNLP},
  year      = {2021}
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
Text-to-image alignment: the cosine similarity between the embedding of each generated image (`predictions`) and the
embedding of its prompt (`references`), averaged over pairs.

The score is the raw cosine in [-1, 1]: it is neither multiplied by 100 nor clipped at 0 as in CLIPScore (Hessel et
al., 2021), matching the ~0.7 scale of the BiomedCLIP scores reported for UniMedVL.

Embeddings come from `image_embedder` / `text_embedder` (callables: list of images -> (N, D) array, list of strings ->
(N, D) array; both or neither), or by default from BiomedCLIP
(microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224) through `open_clip`, which must be installed with the model
already in the local Hugging Face cache; otherwise `EmbedderUnavailableError` says what is missing. BiomedCLIP images
are H x W (grayscale) or H x W x 3, uint8 or floats in [0, 1]; they go through BiomedCLIP's own preprocessing (resize
to 224, CLIP normalisation), and prompts are tokenised to its 256-token context. Images are kept losslessly as `.npy`
bytes in evaluate's Arrow cache.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of arrays): generated images.
    references (`list` of `str`): the prompt of each image.
    image_embedder (`callable`, *optional*): list of images -> (N, D) image embeddings.
    text_embedder (`callable`, *optional*): list of prompts -> (N, D) text embeddings.
    batch_size (`int`, *optional*, defaults to 64): items per embedder call.
    device (`str`, *optional*): torch device for BiomedCLIP; CUDA when available, else CPU.

Returns:
    clip_score (`float`): mean image-text cosine similarity.
    scores (`list` of `float`): the cosine similarity of each pair.

Examples:
    >>> clip_score = evaluate.load("clip_score")
    >>> clip_score.compute(predictions=[np.zeros((2, 2))], references=["a chest x-ray"],
    ...                    image_embedder=lambda images: [[1.0, 0.0]], text_embedder=lambda texts: [[1.0, 1.0]])
    {'clip_score': 0.7071067811865475, 'scores': [0.7071067811865475]}
"""

BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDCLIP_CONTEXT_LENGTH = 256


class InputLengthError(ValueError):
    """Images and prompts do not pair up one to one."""


class EmptyInputError(ValueError):
    """There is no image-prompt pair to score."""


class EmptyReferenceError(ValueError):
    """A prompt is empty."""


class NonFiniteEmbeddingError(ValueError):
    """An embedding holds NaN or infinite values, or is all zeros (no direction)."""


class EmbeddingShapeError(ValueError):
    """Embeddings are not (N, D) with the same D for images and prompts."""


class EmbedderUnavailableError(ValueError):
    """No embedders were given and BiomedCLIP cannot be loaded on this machine, or only one embedder was given."""


def encode_array(array) -> bytes:
    """Serialise an array-like losslessly (shape and dtype included) as `.npy` bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_array(blob: bytes) -> np.ndarray:
    """Inverse of `encode_array`."""
    return np.load(io.BytesIO(blob), allow_pickle=False)


def embed(items, embedder, batch_size: int, name: str) -> np.ndarray:
    """Run `embedder` over `items` in batches and return (N, D) float64 embeddings, checked to be usable."""
    batches = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = np.asarray(embedder(chunk), dtype=np.float64)
        if batch.ndim != 2 or batch.shape[0] != len(chunk):
            raise EmbeddingShapeError(
                f"The {name} embedder must map {len(chunk)} items to ({len(chunk)}, D) embeddings; got {batch.shape}."
            )
        batches.append(batch)
    embeddings = np.concatenate(batches)
    unusable = np.flatnonzero(~np.isfinite(embeddings).all(axis=1) | ~embeddings.any(axis=1))
    if unusable.size:
        raise NonFiniteEmbeddingError(f"The {name} embedding of pair {unusable[0]} is NaN, infinite or all zeros.")
    return embeddings


def cosine_similarities(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    if image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise EmbeddingShapeError(
            f"Image embeddings are {image_embeddings.shape[1]}-d but text embeddings are {text_embeddings.shape[1]}-d."
        )
    images = image_embeddings / np.linalg.norm(image_embeddings, axis=1, keepdims=True)
    texts = text_embeddings / np.linalg.norm(text_embeddings, axis=1, keepdims=True)
    return np.sum(images * texts, axis=1)


def _to_pil_rgb(image: np.ndarray):
    """H x W or H x W x 3, uint8 or [0, 1] float -> PIL RGB image."""
    from PIL import Image

    if image.dtype != np.uint8:
        image = np.uint8(np.round(np.clip(image, 0.0, 1.0) * 255))
    return Image.fromarray(image).convert("RGB")


def biomedclip_embedders(device=None):
    """(image_embedder, text_embedder) from BiomedCLIP via `open_clip`, loaded from the local Hugging Face cache."""
    try:
        import open_clip
        import torch
    except ImportError as error:
        raise EmbedderUnavailableError(
            "Without image_embedder/text_embedder this metric uses BiomedCLIP, which needs the open_clip package "
            "(`pip install open_clip_torch`)."
        ) from error
    try:
        model, preprocess = open_clip.create_model_from_pretrained(BIOMEDCLIP)
        tokenizer = open_clip.get_tokenizer(BIOMEDCLIP)
    except (OSError, ValueError, RuntimeError) as error:
        raise EmbedderUnavailableError(
            f"BiomedCLIP ({BIOMEDCLIP}) could not be loaded: {error}. Download it once while online so that it is in "
            "the Hugging Face cache, or pass image_embedder and text_embedder."
        ) from error
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()

    def embed_images(images):
        batch = torch.stack([preprocess(_to_pil_rgb(image)) for image in images]).to(device)
        with torch.no_grad():
            return model.encode_image(batch).float().cpu().numpy()

    def embed_texts(texts):
        tokens = tokenizer(list(texts), context_length=BIOMEDCLIP_CONTEXT_LENGTH).to(device)
        with torch.no_grad():
            return model.encode_text(tokens).float().cpu().numpy()

    return embed_images, embed_texts


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CLIPScore(evaluate.Metric):
    """Mean cosine similarity between generated images and their prompts in a joint embedding space."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("binary"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://huggingface.co/microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add images (stored as `.npy` bytes) and their prompts, after checking that they pair up."""
        if predictions is not None and references is not None and len(predictions) != len(references):
            raise InputLengthError(
                f"Got {len(predictions)} predictions (images) but {len(references)} references (prompts)."
            )
        images = None if predictions is None else [encode_array(image) for image in predictions]
        super().add_batch(predictions=images, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one image (stored as `.npy` bytes) and its prompt."""
        super().add(prediction=encode_array(prediction), reference=reference, **kwargs)

    def _compute(self, predictions, references, image_embedder=None, text_embedder=None, batch_size=64, device=None):
        if not references:
            raise EmptyInputError("No pairs to score: predictions and references are empty.")
        blank = [index for index, text in enumerate(references) if not text.strip()]
        if blank:
            raise EmptyReferenceError(f"Reference (prompt) {blank[0]} is empty.")
        if (image_embedder is None) != (text_embedder is None):
            raise EmbedderUnavailableError("Pass both image_embedder and text_embedder, or neither (for BiomedCLIP).")
        if image_embedder is None:
            image_embedder, text_embedder = biomedclip_embedders(device)

        images = [decode_array(blob) for blob in predictions]
        scores = cosine_similarities(
            embed(images, image_embedder, batch_size, "image"), embed(references, text_embedder, batch_size, "text")
        )
        return {"clip_score": float(scores.mean()), "scores": scores.tolist()}
