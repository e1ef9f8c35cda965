# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Benchmark runners: one function per evaluation family, from a model and a dataset to `results.json` and a report.

```python
from unimedvl.evaluation import evaluate_vqa

results = evaluate_vqa("General-Medical-AI/UniMedVL", "SLAKE/test.json", image_root="SLAKE/imgs", output_dir="eval",
                       batch_size=16)
results["metrics"]["closed_accuracy"]
```

Every runner writes into `output_dir`:
- `predictions.jsonl`: one JSON record per example, keyed by a stable example id, appended after every batch. A run
  that finds it skips the examples already there, so an interrupted run resumes where it stopped; `run.json` holds
  the settings the predictions were made with, and a run with other settings is refused (`CacheMismatchError`).
  Generated images are saved as lossless PNG under `images/`.
- `results.json` (see [`RESULTS_KEYS`]) and `report.md`, plus `report.html` with embedded thumbnails when `html=True`.

Metrics are always recomputed from the cached predictions, so a finished run can be rescored without regenerating.
"""

import hashlib
import importlib
import json
import re
import warnings
from collections import namedtuple
from pathlib import Path

import numpy as np

from .benchmarks import OPTION_LETTERS, get_benchmark
from .cache import prepare_output_dir
from .data import DatasetSpec, count_rows, iter_examples, load_rows, open_image, open_images
from .features import FeatureExtractor
from .metrics import load_metric
from .report import write_report


DEFAULT_VQA_PROMPT = "{question}"
MULTIPLE_CHOICE_PROMPT = (
    "{question}\nOptions:\n{options}\nAnswer with the option's letter from the given choices directly."
)
DEFAULT_REPORT_PROMPT = "Describe the findings in this medical image."
EXAMPLES_PER_MODALITY = 3
THUMBNAIL_SIZE = 256
MAX_GENERATION_SIDE = 1024
# Keys of results.json, in order.
RESULTS_KEYS = (
    "model", "task", "benchmark", "dataset", "config", "split", "num_examples", "metrics", "per_modality", "protocol",
    "model_index", "examples", "unavailable", "notes",
)  # fmt: skip
# Hub model-card task types and, per family, the reported metrics as (key in metrics, model-index type, name).
TASKS = {
    "vqa": ("visual-question-answering", "Medical visual question answering"),
    "report": ("image-to-text", "Radiology report generation"),
    "t2i": ("text-to-image", "Medical text-to-image generation"),
    "i2i": ("image-to-image", "Medical image-to-image generation"),
}
MODEL_INDEX_METRICS = {
    "vqa": [
        ("accuracy", "accuracy", "Accuracy"),
        ("closed_accuracy", "accuracy", "Closed-question accuracy"),
        ("open_recall", "recall", "Open-question recall"),
        ("open_f1", "f1", "Open-question token F1"),
    ],
    "report": [
        *[(f"bleu_{n}", "bleu", f"BLEU-{n}") for n in range(1, 5)],
        ("rouge_l", "rouge", "ROUGE-L"),
        ("meteor", "meteor", "METEOR"),
        ("cider", "cider", "CIDEr"),
    ],
    "t2i": [
        ("fid_modality_mean", "fid", "gFID (mean over modalities)"),
        ("fid", "fid", "FID (all images)"),
        ("clip_score", "clip_score", "BiomedCLIP score"),
    ],
    "i2i": [("psnr", "psnr", "PSNR (dB)"), ("ssim", "ssim", "SSIM")],
}

LoadedMetric = namedtuple("LoadedMetric", ["metric", "module"])


class EmptySelectionError(ValueError):
    """The dataset split (after filtering) has no example to evaluate."""


# Runners ---------------------------------------------------------------------------------------------------------


def evaluate_vqa(
    model,
    dataset: str,
    *,
    output_dir: str | Path,
    benchmark: str = "auto",
    split: str = "test",
    config: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    streaming: bool = False,
    image_root: str | None = None,
    columns: dict | None = None,
    language: str | None = "en",
    prompt_template: str | None = None,
    max_new_tokens: int = 64,
    processor=None,
    device=None,
    dtype=None,
    overwrite: bool = False,
    html: bool = False,
    progress: bool = True,
) -> dict:
    """Medical VQA (SLAKE, VQA-RAD, PathVQA, PMC-VQA, OmniMedVQA, ...) with greedy decoding, scored by `medical_vqa`.

    Each question is one user turn: its image(s), then the question alone ([`DEFAULT_VQA_PROMPT`]) or, for a
    multiple-choice question, [`MULTIPLE_CHOICE_PROMPT`] (question, lettered options, "Answer with the option's
    letter ..."); `prompt_template` replaces both (placeholders `{question}` and `{options}`). A question is closed
    when its `answer_type` cell says so (SLAKE), else when it has options or its answer is yes/no.

    Args:
        model: Hub id or folder (either checkpoint layout), or a loaded `UniMedVLForConditionalGeneration`.
        dataset: Hub dataset id, local folder or data file.
        output_dir: where predictions, results and reports go (see the module docstring).
        benchmark: adapter (`slake`, `vqa-rad`, `pathvqa`, `pmc-vqa`, `omnimedvqa`, `vqa`) or `auto` (guessed from
            `dataset`, else `vqa`).
        split, config, streaming, image_root, columns, limit, language: see [`DatasetSpec`].
        batch_size: questions per `generate` call.
        prompt_template: replaces the default prompts.
        max_new_tokens: longest answer.
        processor: the model's processor (default: loaded from the model's path).
        device, dtype: where and in which dtype to load `model` when it is a path (default: CUDA in bfloat16 when
            available, else CPU in float32).
        overwrite: discard earlier predictions in `output_dir` instead of resuming.
        html: also write `report.html`.
        progress: show progress bars.

    Returns:
        The content of `results.json`.
    """
    _check_template(prompt_template)
    spec = DatasetSpec(dataset, split, config, streaming, image_root, columns, limit, language)
    vqa = _load_metric_module("medical_vqa")
    device, dtype = _device_and_dtype(device, dtype)
    settings = {"prompt_template": prompt_template, "max_new_tokens": max_new_tokens}
    run = _Run("vqa", benchmark, spec, output_dir, model, dtype, settings, overwrite)
    model, processor = _load_understanding_model(model, processor, device, dtype)

    predict = _answer_predictor(
        run, model, processor, lambda example: _vqa_record(vqa.module, example, prompt_template), max_new_tokens
    )
    records = run.predict(predict, batch_size, progress)

    def score(subset):
        return vqa.metric.compute(
            predictions=[record["prediction"] for record in subset],
            references=[record["reference"] for record in subset],
            answer_types=[record["answer_type"] for record in subset],
            options=[record["options"] for record in subset],
        )

    examples = [
        _pick(record, "id", "modality", "question", "options", "answer_type", "reference", "prediction")
        | {"score": _vqa_example_score(vqa.module, record)}
        for record in _first_per_modality(records)
    ]
    protocol = {
        "prompt": prompt_template or {"default": DEFAULT_VQA_PROMPT, "multiple_choice": MULTIPLE_CHOICE_PROMPT},
        "decoding": f"greedy, max_new_tokens={max_new_tokens}",
        "language": language,
        "scoring": "medical_vqa: closed = yes/no or option match after normalisation, open = token recall / F1",
    }
    per_modality = {modality: score(subset) for modality, subset in _by_modality(records).items()}
    return run.finish(score(records), per_modality, protocol, examples, html=html)


def evaluate_report(
    model,
    dataset: str,
    *,
    output_dir: str | Path,
    benchmark: str = "auto",
    split: str = "test",
    config: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    streaming: bool = False,
    image_root: str | None = None,
    columns: dict | None = None,
    prompt: str = DEFAULT_REPORT_PROMPT,
    max_new_tokens: int = 512,
    meteor: bool = True,
    processor=None,
    device=None,
    dtype=None,
    overwrite: bool = False,
    html: bool = False,
    progress: bool = True,
) -> dict:
    """Report generation (IU X-ray, MIMIC-CXR, ...) with greedy decoding, scored by `radiology_report`.

    The instruction is the dataset's `prompt` cell when it has one, else `prompt` (our wording; the paper's is
    unpublished). The reference is the `report` role (columns `findings`, `report`, `text` or `caption`); a list cell
    gives several references. `meteor=False` skips METEOR (a Java process per computation). Other arguments as in
    [`evaluate_vqa`].
    """
    spec = DatasetSpec(dataset, split, config, streaming, image_root, columns, limit, None)
    reports = _load_metric_module("radiology_report")
    device, dtype = _device_and_dtype(device, dtype)
    settings = {"prompt": prompt, "max_new_tokens": max_new_tokens}
    run = _Run("report", benchmark, spec, output_dir, model, dtype, settings, overwrite)
    model, processor = _load_understanding_model(model, processor, device, dtype)

    predict = _answer_predictor(
        run, model, processor, lambda example: _report_record(reports.module, example, prompt), max_new_tokens
    )
    records = run.predict(predict, batch_size, progress)

    def score(subset):
        return reports.metric.compute(
            predictions=[record["prediction"] for record in subset],
            references=[record["reference"] for record in subset],
            meteor=meteor,
        )

    metrics = score(records)
    unavailable = metrics.pop("unavailable")
    per_modality = {
        modality: {key: value for key, value in score(subset).items() if key != "unavailable"}
        for modality, subset in _by_modality(records).items()
    }
    examples = [
        _pick(record, "id", "modality", "prompt", "reference", "prediction") for record in _first_per_modality(records)
    ]
    protocol = {
        "prompt": prompt,
        "decoding": f"greedy, max_new_tokens={max_new_tokens}",
        "tokenisation": "lower-cased runs of letters and digits (pycocoevalcap scorers); sacreBLEU 13a on raw text",
    }
    return run.finish(metrics, per_modality, protocol, examples, unavailable=unavailable, html=html)


def evaluate_text_to_image(
    model,
    dataset: str,
    *,
    output_dir: str | Path,
    benchmark: str = "auto",
    split: str = "test",
    config: str | None = None,
    limit: int | None = None,
    batch_size: int = 4,
    streaming: bool = False,
    image_root: str | None = None,
    columns: dict | None = None,
    height: int = 1024,
    width: int = 1024,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    feature_extractor: str = "inception",
    clip_score: bool = True,
    device=None,
    dtype=None,
    overwrite: bool = False,
    html: bool = False,
    progress: bool = True,
) -> dict:
    """Text-to-image: one image per prompt, then FID against the dataset's real images and the BiomedCLIP score of
    each image with its prompt, overall and per modality.

    Example `i` of the split is generated with the seed `seed + i`, at `height` x `width`, with the pipeline's
    text-to-image defaults unless `num_inference_steps` / `guidance_scale` are given. FID features come from
    `feature_extractor` (`inception`, `biomedclip`, or `pixels` for smoke tests only) on images resized to the
    extractor's square input (bicubic). `fid_modality_mean` is the mean of the per-modality FIDs (the paper's "average
    gFID over modalities"); a modality with fewer than 2 images gets no FID (`unavailable` says so), and fewer than 2
    images in all raise the `fid` metric's `TooFewSamplesError` before anything is generated (when the split size is
    known). The CLIP score needs BiomedCLIP (open_clip and its weights in the Hugging Face cache); without it
    `clip_score` is left out and `unavailable` says why. `model` is a Hub id, a folder or a loaded
    `UniMedVLPipeline`; other arguments as in [`evaluate_vqa`].
    """
    spec = DatasetSpec(dataset, split, config, streaming, image_root, columns, limit, None)
    fid = _load_metric_module("fid")
    device, dtype = _device_and_dtype(device, dtype)
    settings = {
        "height": height, "width": width, "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale, "seed": seed,
    }  # fmt: skip
    run = _Run("t2i", benchmark, spec, output_dir, model, dtype, settings, overwrite)
    if run.expected_count is not None and run.expected_count < 2:
        raise fid.module.TooFewSamplesError(_too_few_message(run.expected_count, "the selection"))
    extractor = FeatureExtractor(feature_extractor, fid.module, device)
    clip, unavailable = _clip_scorer(device) if clip_score else (None, {"clip_score": "disabled (clip_score=False)"})
    pipe = _load_pipeline(model, device, dtype)

    def predict(examples):
        prompts = [str(example["prompt"]).strip() for example in examples]
        images = pipe(
            prompts, height=height, width=width, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, generator=[_generator(seed + ex["index"]) for ex in examples],
            output_type="pil",
        ).images  # fmt: skip
        return [
            _pick(example, "id", "index", "modality")
            | {"prompt": text, "seed": seed + example["index"], "image": run.save_image(image, example["id"])}
            for example, text, image in zip(examples, prompts, images)
        ]

    records = run.predict(predict, batch_size, progress)

    chosen = {record["id"] for record in _first_per_modality(records)}
    generated_features, real_features, clip_scores, examples = {}, {}, {}, []
    for batch in run.scored_batches(records, batch_size, progress):
        generated = [run.open_output(record["image"]) for record, _ in batch]
        real = [open_image(example["image"], run.image_root) for _, example in batch]
        ids = [record["id"] for record, _ in batch]
        generated_features.update(zip(ids, extractor(generated)))
        real_features.update(zip(ids, extractor(real)))
        if clip is not None:
            clip_scores.update(zip(ids, clip(generated, [record["prompt"] for record, _ in batch])))
        for (record, _), image in zip(batch, real):
            if record["id"] in chosen:
                examples.append(
                    _pick(record, "id", "modality", "prompt") | {"generated": record["image"]}
                    | {"real": run.save_thumbnail(image, record["id"], "real")}
                )  # fmt: skip

    notes = []
    metrics = {"num_images": len(records), **_fid(fid, records, generated_features, real_features, notes)}
    per_modality = {}
    for modality, subset in _by_modality(records).items():
        per_modality[modality] = {"num_images": len(subset)}
        if len(subset) < 2:
            unavailable[f"fid[{modality}]"] = _too_few_message(len(subset), f"modality {modality!r}")
        else:
            per_modality[modality] |= _fid(fid, subset, generated_features, real_features, notes, modality)
    modality_fids = [values["fid"] for values in per_modality.values() if "fid" in values]
    if modality_fids:
        metrics["fid_modality_mean"] = float(np.mean(modality_fids))
    if clip is not None:
        metrics["clip_score"] = _mean(clip_scores.values())
        for modality, subset in _by_modality(records).items():
            per_modality[modality]["clip_score"] = _mean(clip_scores[record["id"]] for record in subset)
    protocol = {
        "generation": _generation_protocol(settings) | {"seed": f"{seed} + example index"},
        "fid_features": f"{feature_extractor}, on {extractor.size}x{extractor.size} RGB images (bicubic resize)",
        "fid_modality_mean": "mean of the per-modality FIDs",
        "clip_score": "BiomedCLIP cosine similarity of image and prompt embeddings (not x100)",
    }
    return run.finish(metrics, per_modality, protocol, examples, unavailable=unavailable, notes=notes, html=html)


def evaluate_image_to_image(
    model,
    dataset: str,
    *,
    output_dir: str | Path,
    benchmark: str = "auto",
    split: str = "test",
    config: str | None = None,
    limit: int | None = None,
    batch_size: int = 4,
    streaming: bool = False,
    image_root: str | None = None,
    columns: dict | None = None,
    task: str | None = None,
    task_fields: dict | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    image_guidance_scale: float | None = None,
    seed: int = 0,
    color_mode: str = "auto",
    device=None,
    dtype=None,
    overwrite: bool = False,
    html: bool = False,
    progress: bool = True,
) -> dict:
    """Image-to-image (super-resolution, modality translation, staining, ...): PSNR / SSIM against the targets.

    Each example's instruction is `task` (a preset of `TASK_PRESETS`) when given, else its `instruction` cell: a preset
    name or the instruction itself. A preset is filled with `task_fields`, and its `modality` field (super-resolution,
    translate) with the example's modality unless `task_fields` sets it. The output is generated at the target's size,
    so a target is never resized; only when a target side is not a multiple of 16 (or the target exceeds 1024 pixels)
    is the output generated at the nearest size the model makes and resized (bicubic) to the target's size (`resized`
    in the prediction record). Scores are computed on 8-bit images (data range 255) as `unimedvl.load_image` reads
    them: in grey levels when the target is greyscale (`color_mode="auto"`: R = G = B), else in RGB; `"gray"` /
    `"rgb"` force one. Other arguments as in [`evaluate_text_to_image`].
    """
    from ..pipelines.presets import TASK_PRESETS, task_instruction

    if color_mode not in ("auto", "gray", "rgb"):
        raise ValueError(f"color_mode must be auto, gray or rgb, got {color_mode!r}.")
    if task is not None and task not in TASK_PRESETS:
        raise ValueError(f"Unknown task preset {task!r}; choose one of {sorted(TASK_PRESETS)}.")
    if task is not None:
        task_instruction(task, **(task_fields or {}))  # unknown fields fail before the model loads
    spec = DatasetSpec(dataset, split, config, streaming, image_root, columns, limit, None)
    similarity = _load_metric_module("image_similarity")
    device, dtype = _device_and_dtype(device, dtype)
    settings = {
        "task": task, "task_fields": task_fields, "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale, "image_guidance_scale": image_guidance_scale, "seed": seed,
    }  # fmt: skip
    run = _Run("i2i", benchmark, spec, output_dir, model, dtype, settings, overwrite)
    if task is None and run.columns.get("instruction") is None:
        raise ValueError(
            f"The dataset has no instruction column ({' or '.join(run.adapter.columns['instruction'])}); pass "
            "--instruction-column, or --task with a preset for every example."
        )
    pipe = _load_pipeline(model, device, dtype)

    def instruction_of(example):
        name = task or str(example["instruction"]).strip()
        if name not in TASK_PRESETS:
            return None, name
        fields = dict(task_fields or {})
        if example.get("modality") and "modality" in TASK_PRESETS[name].defaults:
            fields.setdefault("modality", str(example["modality"]))
        return name, task_instruction(name, **fields)

    def predict(examples):
        jobs = []
        for example in examples:
            target_size = open_image(example["target"], run.image_root).size
            jobs.append((example, *instruction_of(example), target_size, generation_size(*target_size)))
        records = {}
        for (example_task, size), group in _grouped(jobs, key=lambda job: (job[1], job[4])).items():
            images = pipe(
                [job[2] for job in group], image=[open_image(job[0]["image"], run.image_root) for job in group],
                task=example_task, width=size[0], height=size[1], num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, image_guidance_scale=image_guidance_scale,
                generator=[_generator(seed + job[0]["index"]) for job in group], output_type="pil",
            ).images  # fmt: skip
            for (example, _, instruction, target_size, _), image in zip(group, images):
                resized = image.size != target_size
                image = image.resize(target_size, _bicubic()) if resized else image
                records[example["id"]] = _pick(example, "id", "index", "modality") | {
                    "task": example_task, "instruction": instruction, "seed": seed + example["index"],
                    "image": run.save_image(image, example["id"]), "resized": resized,
                }  # fmt: skip
        return [records[example["id"]] for example in examples]

    records = run.predict(predict, batch_size, progress)

    chosen = {record["id"] for record in _first_per_modality(records)}
    scores, examples = {}, []
    for batch in run.scored_batches(records, batch_size, progress):
        targets = [open_image(example["target"], run.image_root) for _, example in batch]
        generated = [run.open_output(record["image"]) for record, _ in batch]
        ids = [record["id"] for record, _ in batch]
        scores.update(_similarity_scores(similarity.metric, ids, generated, targets, color_mode))
        for (record, example), target in zip(batch, targets):
            if record["id"] in chosen:
                source = open_image(example["image"], run.image_root)
                examples.append(
                    _pick(record, "id", "modality", "instruction") | scores[record["id"]]
                    | {"input": run.save_thumbnail(source, record["id"], "input"), "generated": record["image"],
                       "target": run.save_thumbnail(target, record["id"], "target")}
                )  # fmt: skip

    def summary(subset):
        return {"num_images": len(subset)} | {
            name: _mean(scores[record["id"]][name] for record in subset) for name in ("psnr", "ssim")
        }

    protocol = {
        "generation": _generation_protocol(settings) | {"seed": f"{seed} + example index"},
        "size": "generated at the target's size; resized to it only when not a multiple of 16 or above 1024",
        "color_mode": color_mode,
        "image_similarity": "8-bit images, data range 255; SSIM: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03",
    }
    per_modality = {modality: summary(subset) for modality, subset in _by_modality(records).items()}
    return run.finish(summary(records), per_modality, protocol, examples, html=html)


# A run's output folder -----------------------------------------------------------------------------------------


class _Run:
    """State shared by the runners: the benchmark adapter, the dataset, the output folder and its caches."""

    def __init__(self, family, benchmark, spec: DatasetSpec, output_dir, model, dtype, settings: dict, overwrite):
        self.family = family
        self.adapter = get_benchmark(benchmark, family, spec.path)
        self.spec = spec
        self.output_dir = Path(output_dir)
        self.model_name = _name_of(model)
        self.title = self.adapter.title if self.adapter.name != family else _dataset_name(spec.path)
        self.image_root = spec.default_image_root()
        self.rows = load_rows(spec)
        self.columns = self._check_selection()
        # Known in advance unless rows are filtered by language (or streamed without a limit).
        count = count_rows(self.rows) if self.columns.get("language") is None else None
        self.expected_count = min((n for n in (count, spec.limit) if n is not None), default=None)
        self.num_examples = None
        run_settings = {
            "task": family, "model": self.model_name, "dtype": _dtype_name(model, dtype),
            "benchmark": self.adapter.name, "dataset": spec.path, "config": spec.config, "split": spec.split,
            "language": spec.language, "columns": spec.columns,
        }  # fmt: skip
        self.cache = prepare_output_dir(self.output_dir, run_settings | settings, overwrite)

    def _check_selection(self) -> dict:
        """Resolve the adapter's columns on the first row and open the first example's image(s), so that a missing
        column or a wrong image root fails before the model loads; returns role -> column."""
        first_row = next(iter(self.rows), None)
        if first_row is None:
            raise EmptySelectionError(f"Split {self.spec.split!r} of {self.spec.path} is empty.")
        columns = self.adapter.resolve_columns(first_row.keys(), self.spec.columns)
        first = next(iter_examples(self.rows, columns, self.spec), None)
        if first is None:
            raise EmptySelectionError(
                f"No example of split {self.spec.split!r} of {self.spec.path} is in language {self.spec.language!r}."
            )
        open_images(first["image"], self.image_root)
        return columns

    def examples(self):
        return iter_examples(self.rows, self.columns, self.spec)

    def predict(self, predict_batch, batch_size: int, progress: bool) -> list[dict]:
        """Run `predict_batch` (examples -> records) on the examples not cached yet, `batch_size` at a time, and
        return the records of the whole selection in dataset order."""
        from tqdm.auto import tqdm

        ids, pending = [], []
        with tqdm(total=self.expected_count, desc=f"{self.family} predictions", unit="ex", disable=not progress) as bar:
            for example in self.examples():
                ids.append(example["id"])
                if example["id"] in self.cache:
                    bar.update()
                    continue
                pending.append(example)
                if len(pending) == batch_size:
                    self._predict_pending(predict_batch, pending, bar)
            if pending:
                self._predict_pending(predict_batch, pending, bar)
        self.num_examples = len(ids)
        return [self.cache[example_id] for example_id in ids]

    def _predict_pending(self, predict_batch, pending: list, bar) -> None:
        self.cache.extend(predict_batch(pending))
        bar.update(len(pending))
        pending.clear()

    def scored_batches(self, records: list[dict], batch_size: int, progress: bool):
        """Yield lists of (record, example) pairs over the selection again, to score generated images."""
        from tqdm.auto import tqdm

        by_id = {record["id"]: record for record in records}
        batch = []
        for example in tqdm(self.examples(), total=len(records), desc="scoring", unit="ex", disable=not progress):
            batch.append((by_id[example["id"]], example))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def save_image(self, image, example_id: str) -> str:
        """Save a generated image as `images/<id>.png`; returns that path, relative to the output folder."""
        relative = f"images/{_file_stem(example_id)}.png"
        (self.output_dir / "images").mkdir(exist_ok=True)
        image.save(self.output_dir / relative)
        return relative

    def save_thumbnail(self, image, example_id: str, kind: str) -> str:
        """Save a reduced copy of a dataset image as `references/<id>-<kind>.png` for the report; returns its path."""
        relative = f"references/{_file_stem(example_id)}-{kind}.png"
        (self.output_dir / "references").mkdir(exist_ok=True)
        thumbnail = image.copy()
        thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        thumbnail.save(self.output_dir / relative)
        return relative

    def open_output(self, relative: str):
        """An image of the output folder, as RGB."""
        from PIL import Image

        with Image.open(self.output_dir / relative) as image:
            return image.convert("RGB")

    def finish(self, metrics, per_modality, protocol, examples, *, unavailable=None, notes=None, html=False) -> dict:
        """Assemble `results.json` (keys [`RESULTS_KEYS`]), write it and the report(s), and return it."""
        results = {
            "model": self.model_name,
            "task": self.family,
            "benchmark": self.title,
            "dataset": self.spec.path,
            "config": self.spec.config,
            "split": self.spec.split,
            "num_examples": self.num_examples,
            "metrics": metrics,
            "per_modality": per_modality,
            "protocol": protocol | {
                "adapter": self.adapter.name,
                "columns": {role: column for role, column in self.columns.items() if column},
                "versions": _versions(),
            },
            "model_index": model_index(self.family, self.title, self.spec, metrics),
            "examples": examples,
            "unavailable": unavailable or {},
            "notes": notes or [],
        }
        (self.output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        write_report(results, self.output_dir, html=html)
        return results


# Model cards ---------------------------------------------------------------------------------------------------


def model_index(family: str, title: str, spec: DatasetSpec, metrics: dict) -> list[dict]:
    """The `model-index` results entry of a run, as Hub model cards expect (metric values on the scale of
    `metrics`, rounded to 4 decimals; metrics that were not computed are left out)."""
    task_type, task_name = TASKS[family]
    dataset = {"name": title, "type": spec.path, "split": spec.split}
    if spec.config:
        dataset["config"] = spec.config
    entries = [
        {"type": metric_type, "value": round(float(metrics[key]), 4), "name": name}
        for key, metric_type, name in MODEL_INDEX_METRICS[family]
        if metrics.get(key) is not None
    ]
    return [{"task": {"type": task_type, "name": task_name}, "dataset": dataset, "metrics": entries}]


# Helpers -------------------------------------------------------------------------------------------------------


def vqa_prompt(question: str, options: list[str] | None, template: str | None = None) -> str:
    """The text of a VQA turn: `template` (default [`DEFAULT_VQA_PROMPT`], or [`MULTIPLE_CHOICE_PROMPT`] when the
    question has options) with `{question}` and `{options}` ("A. ...\nB. ..." lines) filled in."""
    lines = "\n".join(f"{letter}. {option}" for letter, option in zip(OPTION_LETTERS, options or []))
    if template is None:
        template = MULTIPLE_CHOICE_PROMPT if options else DEFAULT_VQA_PROMPT
    return template.format(question=question, options=lines)


def generation_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) to generate for a target of this size: the same when both are multiples of 16 and at most
    1024, else scaled to fit 1024 and rounded to multiples of 16 (at least 16)."""
    if width % 16 == 0 and height % 16 == 0 and max(width, height) <= MAX_GENERATION_SIDE:
        return width, height
    scale = min(1.0, MAX_GENERATION_SIDE / max(width, height))
    return tuple(max(16, round(side * scale / 16) * 16) for side in (width, height))


def _check_template(template: str | None) -> None:
    if template is None:
        return
    try:
        template.format(question="", options="")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"prompt template {template!r} must use only the placeholders {{question}} and {{options}} ({error!r})."
        ) from None


def _vqa_record(vqa_module, example: dict, template: str | None) -> dict:
    """Prediction record of a VQA example, without the prediction; checks that the reference is not empty."""
    reference = str(example["answer"] if example["answer"] is not None else "").strip()
    if not vqa_module.normalize_answer(reference):
        raise vqa_module.EmptyReferenceError(f"Example {example['id']!r} has an empty answer ({reference!r}).")
    options = example.get("options")
    answer_type = str(example.get("answer_type") or "").strip().lower()
    if answer_type not in ("closed", "open"):
        answer_type = "closed" if options or vqa_module.normalize_answer(reference) in ("yes", "no") else "open"
    question = str(example["question"]).strip()
    return _pick(example, "id", "index", "modality") | {
        "question": question, "prompt": vqa_prompt(question, options, template), "options": options,
        "answer_type": answer_type, "reference": reference,
    }  # fmt: skip


def _vqa_example_score(vqa_module, record: dict) -> float:
    """1.0 / 0.0 for a closed question, token recall for an open one (the report's example tables)."""
    if record["answer_type"] == "closed":
        return float(vqa_module.closed_correct(record["prediction"], record["reference"], record["options"]))
    return vqa_module.token_recall_f1(record["prediction"], record["reference"])[0]


def _report_record(report_module, example: dict, prompt: str) -> dict:
    """Prediction record of a report example, without the prediction; checks that the reference has words."""
    reference = example["report"]
    references = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    if not references or not all(report_module.tokenize(str(text or "")) for text in references):
        raise report_module.EmptyReferenceError(f"Example {example['id']!r} has an empty reference report.")
    return _pick(example, "id", "index", "modality") | {
        "prompt": str(example.get("prompt") or prompt), "reference": reference,
    }  # fmt: skip


def _answer_predictor(run: "_Run", model, processor, make_record, max_new_tokens: int):
    """The `predict_batch` of an understanding run: one record per example (`make_record(example)`, with its
    `prompt`), answered by greedy decoding on the example's images; returns the records with their `prediction`."""

    def predict(examples):
        records = [make_record(example) for example in examples]
        images = [open_images(example["image"], run.image_root) for example in examples]
        answers = _generate_answers(model, processor, images, [record["prompt"] for record in records], max_new_tokens)
        return [record | {"prediction": answer} for record, answer in zip(records, answers)]

    return predict


def _generate_answers(model, processor, images: list[list], prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of the model to one user turn (images, then text) per example, batched with left padding."""
    import torch

    conversations = [
        [{"role": "user", "content": [{"type": "image", "image": image} for image in example_images]
          + [{"type": "text", "text": prompt}]}]
        for example_images, prompt in zip(images, prompts)
    ]  # fmt: skip
    inputs = processor.apply_chat_template(
        conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
        processor_kwargs={"padding": True},
    ).to(model.device)  # fmt: skip
    with torch.inference_mode():
        sequences = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    answers = processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def _fid(fid, records, generated_features, real_features, notes: list, modality=None) -> dict:
    """`fid` and `feature_dim` of the records' generated vs real features; covariance warnings go to `notes`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fid.module.RankDeficientCovarianceWarning)
        result = fid.metric.compute(
            predictions=[generated_features[record["id"]] for record in records],
            references=[real_features[record["id"]] for record in records],
        )
    where = "all images" if modality is None else f"modality {modality!r}"
    notes.extend(f"FID ({where}): {warning.message}" for warning in caught)
    return {"fid": result["fid"], "feature_dim": result["feature_dim"]}


def _too_few_message(count: int, where: str) -> str:
    return (
        f"FID needs at least 2 generated and 2 real images per set, and {where} has {count}; a reliable estimate "
        "needs more images than the feature dimension (2049+ for Inception features)."
    )


def _clip_scorer(device):
    """(scorer, unavailable): `scorer(images, prompts) -> per-pair BiomedCLIP scores`, or `None` and the reason."""
    clip = _load_metric_module("clip_score")
    try:
        image_embedder, text_embedder = clip.module.biomedclip_embedders(device)
    except clip.module.EmbedderUnavailableError as error:
        return None, {"clip_score": str(error)}

    def score(images, prompts):
        result = clip.metric.compute(
            predictions=[np.asarray(image) for image in images], references=prompts,
            image_embedder=image_embedder, text_embedder=text_embedder,
        )  # fmt: skip
        return result["scores"]

    return score, {}


def _similarity_scores(metric, ids, generated, targets, color_mode: str) -> dict:
    """id -> {"psnr", "ssim"} of each generated / target pair of 8-bit RGB images (see `evaluate_image_to_image`)."""
    pairs = {}
    for example_id, prediction, target in zip(ids, generated, targets):
        prediction, target = np.asarray(prediction), np.asarray(target)
        gray = color_mode == "gray" or (color_mode == "auto" and (target == target[..., :1]).all())
        if gray:
            prediction, target = _luma(prediction), _luma(target)
        pairs.setdefault(gray, []).append((example_id, prediction, target))
    scores = {}
    for gray, group in pairs.items():
        result = metric.compute(
            predictions=[prediction for _, prediction, _ in group], references=[target for _, _, target in group],
            data_range=255, channel_axis=None if gray else -1,
        )  # fmt: skip
        for (example_id, _, _), psnr, ssim in zip(group, result["psnr_per_image"], result["ssim_per_image"]):
            scores[example_id] = {"psnr": psnr, "ssim": ssim}
    return scores


def _luma(rgb: np.ndarray) -> np.ndarray:
    """8-bit RGB -> 8-bit grey levels (PIL's ITU-R 601-2 luma transform)."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).convert("L"))


def _load_metric_module(name: str) -> LoadedMetric:
    """A shipped metric, held in memory, and the module evaluate imported it from (its helpers and named errors)."""
    metric = load_metric(name, keep_in_memory=True)
    return LoadedMetric(metric, importlib.import_module(type(metric).__module__))


def _device_and_dtype(device, dtype):
    """Defaults: CUDA in bfloat16 when available, else CPU in float32; dtype may be given by name."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, getattr(torch, dtype) if isinstance(dtype, str) else dtype


def _dtype_name(model, dtype) -> str:
    """The dtype predictions are made in, for the run settings: a loaded model's own, else the one it loads in."""
    return str(dtype if isinstance(model, (str, Path)) else model.dtype)


def _load_understanding_model(model, processor, device, dtype):
    """(model, processor) from a path or a loaded model, in eval mode."""
    from .. import UniMedVLForConditionalGeneration, UniMedVLProcessor

    if processor is None:
        processor = UniMedVLProcessor.from_pretrained(_name_of(model))
    if isinstance(model, (str, Path)):
        model = UniMedVLForConditionalGeneration.from_pretrained(str(model), dtype=dtype).to(device)
    return model.eval(), processor


def _load_pipeline(model, device, dtype):
    """A `UniMedVLPipeline` from a path (its step progress bar off: the runner shows its own), or `model` itself."""
    from .. import UniMedVLPipeline

    if not isinstance(model, (str, Path)):
        return model
    pipe = UniMedVLPipeline.from_pretrained(str(model), torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def _generation_protocol(settings: dict) -> dict:
    """Sampling settings of a run, unset ones shown as the pipeline's defaults."""
    sampling = ("num_inference_steps", "guidance_scale", "image_guidance_scale")
    return {key: "pipeline default" if value is None and key in sampling else value for key, value in settings.items()}


def _dataset_name(path: str) -> str:
    """What generic adapters call a dataset: a Hub id's last part, a local folder's name or a data file's stem."""
    local = Path(path.rstrip("/\\"))
    return local.stem if local.is_file() else local.name


def _name_of(model) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    return getattr(model, "name_or_path", None) or type(model).__name__


def _versions() -> dict:
    import datasets
    import evaluate
    import torch

    from .. import __version__

    return {"unimedvl": __version__, "torch": torch.__version__, "datasets": datasets.__version__,
            "evaluate": evaluate.__version__}  # fmt: skip


def _by_modality(records: list[dict]) -> dict[str, list[dict]]:
    """Modality -> its records, sorted by modality; empty when no record has a modality."""
    if all(record.get("modality") is None for record in records):
        return {}
    groups = _grouped(records, key=lambda record: str(record.get("modality") or "unspecified"))
    return dict(sorted(groups.items()))


def _first_per_modality(records: list[dict], count: int = EXAMPLES_PER_MODALITY) -> list[dict]:
    """The first `count` records of each modality (or of all records without modalities), in dataset order."""
    groups = _by_modality(records) or {None: records}
    chosen = {record["id"] for subset in groups.values() for record in subset[:count]}
    return [record for record in records if record["id"] in chosen]


def _grouped(items, key) -> dict:
    groups = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def _pick(mapping: dict, *keys) -> dict:
    return {key: mapping.get(key) for key in keys}


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def _bicubic():
    from PIL import Image

    return Image.Resampling.BICUBIC


def _file_stem(example_id: str) -> str:
    """A file name for an example id: the id itself when it is a safe name, else a sanitised prefix and a hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", example_id)[:80]
    if safe == example_id:
        return safe
    return f"{safe}-{hashlib.sha1(example_id.encode()).hexdigest()[:8]}"


__all__ = [
    "DEFAULT_REPORT_PROMPT",
    "DEFAULT_VQA_PROMPT",
    "MULTIPLE_CHOICE_PROMPT",
    "RESULTS_KEYS",
    "EmptySelectionError",
    "evaluate_image_to_image",
    "evaluate_report",
    "evaluate_text_to_image",
    "evaluate_vqa",
    "generation_size",
    "model_index",
    "vqa_prompt",
]
