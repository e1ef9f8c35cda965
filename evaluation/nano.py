# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Measuring UniMedVL-Nano on the held-out split of its data set, with the project's runners (`unimedvl eval`).

```python
from unimedvl.evaluation.nano import ModalityClassifier, fit_modality_classifier
classifier = fit_modality_classifier(".cache/nano_data")     # fitted on the REAL training images only
classifier.predict([image])                                   # e.g. ["CT"]
# the shipped one: ModalityClassifier.load(".../unimedvl/nano/eval/modality_classifier.json")
```

The whole protocol runs with `python -m unimedvl.train.nano evaluate MODEL_DIR OUTPUT_DIR` (`train/nano.py`):

- **Understanding**: `evaluate_vqa` on the `vqa` view (every held-out understanding row; see `train/nano.py`), then
  closed-question accuracy per question type (`medical_vqa` rules) next to two majority-class baselines: the most
  frequent *test* answer (an upper bound for any constant answer) and the most frequent *training* answer (what a
  constant answer learned from the training data scores).
- **Generation**: `evaluate_text_to_image` on the `t2i` view (one image per held-out caption, seed = index), then:
  1. *modality accuracy*: an independent [`ModalityClassifier`] (multinomial logistic regression on
     [`image_features`], fitted on the real training images only) assigns each generated image a modality; chance is
     1/6. Its accuracy on the real held-out images is reported next to it as the classifier's own ceiling.
  2. *Fréchet distance* (FID-style) between [`image_features`] (4 x 4 grid, 8 bins: 33-d) of the generated images
     and of the held-out real images, next to three controls of the same size: uniform noise images, a
     *wrong-modality* set (for every held-out caption, an image generated for the next modality of
     [`MODALITY_CYCLE`]), and real *training* images with the held-out modality counts (a reference floor).

The features are hand-made, fixed and deterministic (no learned weights, nothing to download), so the numbers are
comparable across runs and machines; they measure coarse appearance (layout, grey levels, colour, edges), not
diagnostic content.
"""

import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .metrics import load_metric


MODALITY_CYCLE = ("CT", "MRI", "X-ray", "ultrasound", "histopathology", "fundus photograph")
FEATURE_SIZE = 64
CLASSIFIER_GRID, CLASSIFIER_BINS = 8, 16
FRECHET_GRID, FRECHET_BINS = 4, 8
CLASSIFIER_L2 = 1e-2


def image_features(image: Image.Image, grid: int = CLASSIFIER_GRID, bins: int = CLASSIFIER_BINS) -> np.ndarray:
    """Fixed appearance features of an image, resized to 64 x 64 RGB (area averaging) with values in [0, 1]:

    - the mean grey level of each cell of a `grid` x `grid` grid (`grid**2` values);
    - the grey-level histogram over `bins` equal bins of [0, 1] (fractions of pixels);
    - colour: mean chroma (max - min channel), fraction of pixels with chroma above 0.1, mean R, G, B;
    - texture: mean absolute horizontal and vertical grey differences; fraction of near-black pixels (< 0.05).

    Returns a float64 vector of `grid**2 + bins + 8` values.
    """
    rgb = np.asarray(image.convert("RGB").resize((FEATURE_SIZE, FEATURE_SIZE), Image.Resampling.BOX),
                     dtype=np.float64) / 255.0
    grey = rgb.mean(axis=-1)
    cell = FEATURE_SIZE // grid
    cells = grey.reshape(grid, cell, grid, cell).mean(axis=(1, 3)).ravel()
    histogram = np.histogram(grey, bins=bins, range=(0.0, 1.0))[0] / grey.size
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    colour = [chroma.mean(), (chroma > 0.1).mean(), *rgb.mean(axis=(0, 1))]
    texture = [np.abs(np.diff(grey, axis=1)).mean(), np.abs(np.diff(grey, axis=0)).mean(), (grey < 0.05).mean()]
    return np.concatenate([cells, histogram, colour, texture])


def feature_matrix(images, grid: int = CLASSIFIER_GRID, bins: int = CLASSIFIER_BINS) -> np.ndarray:
    return np.stack([image_features(image, grid, bins) for image in images])


class ModalityClassifier:
    """Multinomial logistic regression over standardised [`image_features`]: the independent judge of which modality
    a generated image looks like. Fitted deterministically (float64, full-batch L-BFGS, L2 penalty `l2`)."""

    def __init__(self, classes, mean, std, weight, bias, info=None):
        self.classes = list(classes)
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        self.weight, self.bias = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        self.info = dict(info or {})

    @classmethod
    def fit(cls, images, labels, l2: float = CLASSIFIER_L2, max_iter: int = 500) -> "ModalityClassifier":
        features = feature_matrix(images)
        classes = [modality for modality in MODALITY_CYCLE if modality in set(labels)]
        mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
        x = torch.from_numpy((features - mean) / std)
        y = torch.tensor([classes.index(label) for label in labels])
        weight = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe",
                                      tolerance_grad=1e-9, tolerance_change=1e-12)

        def loss_fn():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(loss_fn)
        classifier = cls(classes, mean, std, weight.detach().numpy(), bias.detach().numpy(),
                         {"model": "multinomial logistic regression on image_features (8x8 grid, 16 bins)",
                          "l2": l2, "train_images": len(labels)})
        classifier.info["train_accuracy"] = classifier.accuracy(images, labels)
        return classifier

    def predict(self, images) -> list[str]:
        logits = ((feature_matrix(images) - self.mean) / self.std) @ self.weight + self.bias
        return [self.classes[index] for index in logits.argmax(axis=1)]

    def accuracy(self, images, labels) -> float:
        return float(np.mean([p == label for p, label in zip(self.predict(images), labels, strict=True)]))

    def to_dict(self) -> dict:
        return {"classes": self.classes, "info": self.info, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "weight": self.weight.tolist(), "bias": self.bias.tolist()}

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path) -> "ModalityClassifier":
        data = json.loads(Path(path).read_text())
        return cls(data["classes"], data["mean"], data["std"], data["weight"], data["bias"], data["info"])


def distinct_images(dataset_dir, split: str) -> tuple[list[Image.Image], list[str]]:
    """The distinct images of a split of a built nano data set (one `modality` row each) and their modalities."""
    from ..train.nano_data import load_nano_dataset

    rows = load_nano_dataset(dataset_dir, split).filter(lambda row: row["question_type"] == "modality")
    return [row["images"][0].convert("RGB") for row in rows], list(rows["modality"])


def fit_modality_classifier(dataset_dir) -> ModalityClassifier:
    """The classifier fitted on the real training images; its accuracy on the real held-out images is recorded in
    `info["test_accuracy"]`."""
    classifier = ModalityClassifier.fit(*distinct_images(dataset_dir, "train"))
    classifier.info["test_accuracy"] = classifier.accuracy(*distinct_images(dataset_dir, "test"))
    return classifier


# Understanding ---------------------------------------------------------------------------------------------------


def majority_baselines(dataset_dir) -> dict:
    """Per closed question type: the most frequent test and training answers and the test accuracy of answering
    them always (from `dataset_info.json`'s answer counts)."""
    answers = json.loads((Path(dataset_dir) / "dataset_info.json").read_text())["counts"]["answers"]
    baselines = {}
    for question_type, counts in answers["test"].items():
        total = sum(counts.values())
        test_majority = max(counts, key=counts.get)
        train_counts = answers["train"].get(question_type, {})
        train_majority = max(train_counts, key=train_counts.get) if train_counts else None
        baselines[question_type] = {
            "test_majority_answer": test_majority, "test_majority_accuracy": counts[test_majority] / total,
            "train_majority_answer": train_majority,
            "train_majority_accuracy": counts.get(train_majority, 0) / total,
        }
    return baselines


def question_type_accuracy(records: list[dict]) -> dict:
    """Accuracy (`medical_vqa` closed rule for closed questions, open recall for `describe`) per question type; the
    question type is the suffix of the example id (`<image_id>:<question_type>`)."""
    metric = load_metric("medical_vqa")
    by_type = {}
    for record in records:
        by_type.setdefault(record["id"].rsplit(":", 1)[1], []).append(record)
    scores = {}
    for question_type, subset in sorted(by_type.items()):
        result = metric.compute(predictions=[r["prediction"] for r in subset],
                                references=[r["reference"] for r in subset],
                                answer_types=[r["answer_type"] for r in subset])
        key = "open_recall" if question_type == "describe" else "closed_accuracy"
        scores[question_type] = {"n": len(subset), key: result[key]}
    return scores


# Generation ------------------------------------------------------------------------------------------------------


def frechet(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The `fid` metric on precomputed features (equal set sizes)."""
    return load_metric("fid").compute(predictions=list(features_a), references=list(features_b))["fid"]


def noise_images(count: int, seed: int = 0, size: int = FEATURE_SIZE) -> list[Image.Image]:
    """Uniform RGB noise images (the noise control)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def wrong_modality_images(generated: list[Image.Image], modalities: list[str]) -> list[Image.Image]:
    """For the i-th requested modality m, the next image generated for the modality after m in [`MODALITY_CYCLE`]
    (cycling through that modality's images): a set with the held-out layout but every image of the wrong modality."""
    by_modality = {}
    for image, modality in zip(generated, modalities, strict=True):
        by_modality.setdefault(modality, []).append(image)
    present = [m for m in MODALITY_CYCLE if m in by_modality]
    taken = dict.fromkeys(present, 0)
    control = []
    for modality in modalities:
        other = present[(present.index(modality) + 1) % len(present)]
        control.append(by_modality[other][taken[other] % len(by_modality[other])])
        taken[other] += 1
    return control


def matched_training_images(dataset_dir, modalities: list[str], seed: int = 0) -> list[Image.Image]:
    """Real training images with the same modality counts as `modalities` (seeded choice within each modality)."""
    images, labels = distinct_images(dataset_dir, "train")
    pools = {}
    for image, label in zip(images, labels):
        pools.setdefault(label, []).append(image)
    rng = random.Random(seed)
    for pool in pools.values():
        rng.shuffle(pool)
    taken = dict.fromkeys(pools, 0)
    chosen = []
    for modality in modalities:
        chosen.append(pools[modality][taken[modality] % len(pools[modality])])
        taken[modality] += 1
    return chosen


def frechet_table(generated, real, modalities, dataset_dir) -> dict:
    """Fréchet distances (33-d [`image_features`]) to the held-out real images: generated images and the controls."""
    def features(images):
        return feature_matrix(images, FRECHET_GRID, FRECHET_BINS)

    real_features = features(real)
    sets = {
        "generated": generated,
        "noise": noise_images(len(real)),
        "wrong_modality": wrong_modality_images(generated, modalities),
        "real_training_images": matched_training_images(dataset_dir, modalities),
    }
    return {name: frechet(features(images), real_features) for name, images in sets.items()}


def classification_table(classifier: ModalityClassifier, generated, modalities) -> dict:
    """Modality classifier accuracy on generated images: overall, balanced (mean per-modality recall), per
    modality; chance 1/6."""
    predicted = classifier.predict(generated)
    per_modality = {}
    for modality in MODALITY_CYCLE:
        hits = [p == m for p, m in zip(predicted, modalities) if m == modality]
        if hits:
            per_modality[modality] = {"n": len(hits), "accuracy": float(np.mean(hits))}
    return {
        "accuracy": float(np.mean([p == m for p, m in zip(predicted, modalities)])),
        "balanced_accuracy": float(np.mean([v["accuracy"] for v in per_modality.values()])),
        "chance": 1 / len(classifier.classes),
        "per_modality": per_modality,
        "classifier_accuracy_on_real_test_images": classifier.info.get("test_accuracy"),
    }


def sample_grid(pipe, prompts: list[str], real_images: list[Image.Image], samples: int = 7, seed: int = 0,
                **generation_kwargs) -> Image.Image:
    """One row per prompt: the real image it describes, then `samples` images generated with seeds `seed`, ...;
    64 px cells."""
    rows = []
    for prompt, real in zip(prompts, real_images, strict=True):
        generators = [torch.Generator().manual_seed(seed + index) for index in range(samples)]
        images = pipe([prompt] * samples, generator=generators, **generation_kwargs).images
        rows.append([real.convert("RGB").resize((FEATURE_SIZE, FEATURE_SIZE))] + images)
    grid = Image.new("RGB", (FEATURE_SIZE * (samples + 1), FEATURE_SIZE * len(rows)))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid.paste(image.resize((FEATURE_SIZE, FEATURE_SIZE)), (c * FEATURE_SIZE, r * FEATURE_SIZE))
    return grid


__all__ = [
    "MODALITY_CYCLE", "ModalityClassifier", "classification_table", "distinct_images", "feature_matrix",
    "fit_modality_classifier", "frechet", "frechet_table", "image_features", "majority_baselines",
    "matched_training_images", "noise_images",
    "question_type_accuracy", "sample_grid", "wrong_modality_images",
]
