# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Model and dataset cards for UniMedVL checkpoints, built on `huggingface_hub.ModelCard` / `DatasetCard`.

```python
from unimedvl.model_cards import build_model_card, load_eval_results
results = load_eval_results(["eval/slake/results.json", "eval/t2i/results.json"])
card = build_model_card("./UniMedVL-hf", repo_id="me/UniMedVL-hf", eval_results=results)
card.save("./UniMedVL-hf/README.md")
```

Measured results come from the evaluation runner (`unimedvl eval`): each run writes a `results.json` whose
`model_index` list holds ready-made `model-index` entries (see `evaluation/README.md`):

```json
{"model": "me/UniMedVL-hf", "task": "vqa", "benchmark": "SLAKE", "split": "test", "num_examples": 1061,
 "model_index": [{"task": {"type": "visual-question-answering", "name": "Medical visual question answering"},
                  "dataset": {"name": "SLAKE", "type": "SLAKE/test.json", "split": "test"},
                  "metrics": [{"type": "accuracy", "value": 0.7541, "name": "Accuracy"}]}], ...}
```

[`load_eval_results`] reads one or several such files (or a JSON list of such objects); only `model` and
`model_index` are used. Every metric becomes one `EvalResult` of the card's `model-index` and one row of its
"Measured by this project" table.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData


TEMPLATES = Path(__file__).resolve().parent / "templates"
MODEL_CARD_TEMPLATE = TEMPLATES / "model_card.md"
DATASET_CARD_TEMPLATE = TEMPLATES / "dataset_card.md"

RELEASE_REPO_ID = "General-Medical-AI/UniMedVL"
PAPER_URL = "https://arxiv.org/abs/2510.15710"

# Title checked against the paper's public listings (arXiv 2510.15710, OpenReview, ICML 2026).
CITATION = """@article{ning2025unimedvl,
  title   = {{UniMedVL}: Unifying Medical Multimodal Understanding and Generation through
             Observation-Knowledge-Analysis},
  author  = {Ning, Junzhi and Li, Wei and Tang, Cheng and Lin, Jiashi and Ma, Chenglong and Zhang, Chaoyang and
             Liu, Jiyao and Chen, Ying and Gao, Shujian and Liu, Lihao and Pu, Yuandong and Xu, Huihui and
             Gou, Chenhui and Huang, Ziyan and Xin, Yi and Qin, Qi and Deng, Zhongying and Song, Diping and
             Fu, Bin and Yang, Guang and Ji, Yuanfeng and Li, Tianbin and Su, Yanzhou and Ye, Jin and
             Tang, Shixiang and Hu, Ming and He, Junjun},
  journal = {arXiv preprint arXiv:2510.15710},
  year    = {2025},
  url     = {https://arxiv.org/abs/2510.15710}
}"""

# Numbers reported by the UniMedVL paper for the released 14B model (not re-measured here).
PAPER_RESULTS = (
    ("Medical VQA", "VQA-RAD", "accuracy (%)", "61.9"),
    ("Medical VQA", "SLAKE", "accuracy (%)", "75.4"),
    ("Medical VQA", "PathVQA", "accuracy (%)", "53.5"),
    ("Medical VQA", "OmniMedVQA", "accuracy (%)", "85.8"),
    ("Medical VQA", "GMAI-MMBench", "accuracy (%)", "60.75"),
    ("Text-to-image", "8 modalities (average)", "gFID ↓", "96.29"),
    ("Text-to-image", "8 modalities (average)", "BiomedCLIP score ↑", "0.706"),
    ("Virtual staining (H&E → IHC)", "IHC staining", "PSNR / SSIM", "20.27 / 0.456"),
    ("Super-resolution", "MRI 4×", "PSNR / SSIM", "27.29 / 0.890"),
    ("Modality translation", "MRI T2 ↔ FLAIR", "PSNR / SSIM", "25.07 / 0.882"),
)

TAGS = ["medical", "vision-language", "text-to-image", "image-to-image", "unimedvl", "bagel", "custom_code"]


class EvalResultsError(ValueError):
    """An evaluation results file that is not the runner's `results.json`; the message names the file and entry."""


@dataclass(frozen=True)
class MeasuredResult:
    """One metric of one evaluation run (one `model-index` metric)."""

    task_type: str
    task_name: str
    dataset_name: str
    dataset_type: str
    split: str
    metric_type: str
    value: float
    metric_name: str | None = None
    dataset_config: str | None = None
    num_examples: int | None = None

    def to_eval_result(self) -> EvalResult:
        return EvalResult(
            task_type=self.task_type,
            task_name=self.task_name,
            dataset_type=self.dataset_type,
            dataset_name=self.dataset_name,
            dataset_config=self.dataset_config,
            dataset_split=self.split,
            metric_type=self.metric_type,
            metric_name=self.metric_name,
            metric_value=self.value,
        )


@dataclass(frozen=True)
class EvalReport:
    """The measured results of one or several runs, and the models they were measured on."""

    results: tuple[MeasuredResult, ...]
    models: tuple[str, ...] = ()


def _text(value, where: str, key: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise EvalResultsError(f"{where}: {key!r} must be a non-empty string, got {value!r}.")
    return value


def _parse_run(run, where: str) -> list[MeasuredResult]:
    if not isinstance(run, dict) or not isinstance(run.get("model_index"), list):
        raise EvalResultsError(
            f"{where}: expected the evaluation runner's results.json (an object with a 'model_index' list)."
        )
    measured = []
    for position, entry in enumerate(run["model_index"]):
        entry_where = f"{where}: model_index[{position}]"
        if not isinstance(entry, dict):
            raise EvalResultsError(f"{entry_where}: expected an object, got {type(entry).__name__}.")
        task, dataset, metrics = entry.get("task"), entry.get("dataset"), entry.get("metrics")
        if not isinstance(task, dict) or not isinstance(dataset, dict) or not isinstance(metrics, list):
            raise EvalResultsError(f"{entry_where}: needs 'task' and 'dataset' objects and a 'metrics' list.")
        for index, metric in enumerate(metrics):
            metric_where = f"{entry_where}.metrics[{index}]"
            if not isinstance(metric, dict):
                raise EvalResultsError(f"{metric_where}: expected an object, got {type(metric).__name__}.")
            value = metric.get("value")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise EvalResultsError(f"{metric_where}: 'value' must be a finite number, got {value!r}.")
            measured.append(
                MeasuredResult(
                    task_type=_text(task.get("type"), entry_where, "task.type"),
                    task_name=_text(task.get("name"), entry_where, "task.name", required=False) or task.get("type"),
                    dataset_name=_text(dataset.get("name"), entry_where, "dataset.name"),
                    dataset_type=_text(dataset.get("type"), entry_where, "dataset.type", required=False)
                    or dataset.get("name"),
                    split=_text(dataset.get("split"), entry_where, "dataset.split", required=False) or "test",
                    dataset_config=_text(dataset.get("config"), entry_where, "dataset.config", required=False),
                    metric_type=_text(metric.get("type"), metric_where, "type"),
                    metric_name=_text(metric.get("name"), metric_where, "name", required=False),
                    value=float(value),
                    num_examples=run.get("num_examples") if isinstance(run.get("num_examples"), int) else None,
                )
            )
    return measured


def parse_eval_results(runs, source: str = "results") -> EvalReport:
    """Validate one results object (or a list of them) of the evaluation runner."""
    runs = runs if isinstance(runs, list) else [runs]
    if not runs:
        raise EvalResultsError(f"{source}: no evaluation runs.")
    measured, models = [], []
    for position, run in enumerate(runs):
        measured += _parse_run(run, source if len(runs) == 1 else f"{source}[{position}]")
        model = run.get("model")
        if isinstance(model, str) and model and model not in models:
            models.append(model)
    if not measured:
        raise EvalResultsError(f"{source}: the runs hold no computed metric (all unavailable?).")
    return EvalReport(results=tuple(measured), models=tuple(models))


def load_eval_results(paths) -> EvalReport:
    """Read and validate one or several `results.json` files of the evaluation runner."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    runs = []
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EvalResultsError(f"evaluation results file not found: {path}") from None
        except json.JSONDecodeError as error:
            raise EvalResultsError(f"{path}: not valid JSON ({error}).") from None
        if isinstance(data, list):
            if not data:
                raise EvalResultsError(f"{path}: no evaluation runs.")
            runs += [(run, f"{path}[{index}]") for index, run in enumerate(data)]
        else:
            runs.append((data, str(path)))
    measured, models = [], []
    for run, where in runs:
        report = parse_eval_results(run, where)
        measured += report.results
        models += [model for model in report.models if model not in models]
    return EvalReport(results=tuple(measured), models=tuple(models))


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint inspection
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointFacts:
    """What the card says about the files of a checkpoint folder."""

    num_parameters: int | None
    weight_dtypes: tuple[str, ...]
    has_pipeline_files: bool
    has_custom_code: bool
    is_original_layout: bool
    adapter_base_model: str | None
    files: tuple[str, ...]


def inspect_checkpoint(folder: str | os.PathLike | None) -> CheckpointFacts:
    """Parameter count and dtypes (from safetensors headers, nothing is loaded) and which file groups are present."""
    if folder is None:
        return CheckpointFacts(None, (), False, False, False, None, ())
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    files = tuple(sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()))
    count, dtypes = count_parameters(folder)
    adapter_base = None
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        adapter_base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    return CheckpointFacts(
        num_parameters=count,
        weight_dtypes=dtypes,
        has_pipeline_files=(folder / "model_index.json").is_file(),
        has_custom_code=any(name.endswith(".py") for name in files),
        is_original_layout=(folder / "llm_config.json").is_file() and not (folder / "config.json").is_file(),
        adapter_base_model=adapter_base,
        files=files,
    )


def count_parameters(folder: Path) -> tuple[int | None, tuple[str, ...]]:
    """Parameters of the model weights: the tensors of `model.safetensors.index.json` (which may point into a
    subfolder), else of the folder's own `*.safetensors` (the original layout's `ema.safetensors`); never the VAE's."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        by_file: dict[Path, list[str]] = {}
        for name, file in json.loads(index.read_text())["weight_map"].items():
            by_file.setdefault(folder / file, []).append(name)
    else:
        files = [path for path in folder.glob("*.safetensors") if path.name != "ae.safetensors"]
        if (folder / "ema.safetensors").is_file():  # original layout: the released weights, not the raw training ones
            files = [folder / "ema.safetensors"]
        by_file = dict.fromkeys(files)
    if not by_file:
        return None, ()
    total, dtypes = 0, set()
    for path, names in by_file.items():
        with safe_open(str(path), framework="numpy") as handle:
            for name in names if names is not None else handle.keys():
                tensor_slice = handle.get_slice(name)
                total += math.prod(tensor_slice.get_shape())
                dtypes.add(tensor_slice.get_dtype())
    return total, tuple(sorted(dtypes))


def format_parameters(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def _files_summary(facts: CheckpointFacts) -> str:
    if not facts.files:
        return "see the repository's file list."
    parts = []
    if facts.is_original_layout:
        parts.append("original release layout (`llm_config.json`, `ema.safetensors`, `ae.safetensors`)")
    else:
        parts.append("transformers weights and config")
    if facts.has_custom_code:
        parts.append("modelling code for `trust_remote_code`")
    if facts.has_pipeline_files:
        parts.append("diffusers pipeline files (`model_index.json`)")
    if facts.adapter_base_model:
        parts.append("a PEFT adapter")
    return "; ".join(parts) + "."


# ---------------------------------------------------------------------------------------------------------------------
# Cards
# ---------------------------------------------------------------------------------------------------------------------


def build_model_card(
    checkpoint: str | os.PathLike | None = None,
    repo_id: str | None = None,
    eval_results: EvalReport | None = None,
    base_model: str | None = RELEASE_REPO_ID,
    license: str = "apache-2.0",
    title: str | None = None,
    dataset_repo_id: str | None = None,
) -> ModelCard:
    """The model card of a checkpoint.

    Args:
        checkpoint: the checkpoint folder (read for its parameter count and file groups), or None.
        repo_id: the Hub id the card's code snippets load (default: the folder's name).
        eval_results: measured results; they fill the "Measured by this project" table and `model-index`.
        base_model: where the weights come from (the released model by default; None to leave it out).
        license: licence id of the card's metadata.
        title: the card's heading.
        dataset_repo_id: a Hub dataset documented with [`build_dataset_card`], linked from the card.
    """
    facts = inspect_checkpoint(checkpoint)
    repo_id = repo_id or (Path(checkpoint).resolve().name if checkpoint is not None else RELEASE_REPO_ID)
    model_name = repo_id.split("/")[-1]
    measured = eval_results.results if eval_results is not None else ()
    base = facts.adapter_base_model or (base_model if base_model != repo_id else None)
    card_data = ModelCardData(
        language=["en"],
        license=license,
        library_name="transformers",
        pipeline_tag="any-to-any",
        tags=list(TAGS) + (["peft", "lora"] if facts.adapter_base_model else []),
        base_model=base,
        datasets=[dataset_repo_id] if dataset_repo_id else None,
        model_name=model_name,
        eval_results=[result.to_eval_result() for result in measured] or None,
        **({"base_model_relation": "adapter"} if facts.adapter_base_model else {}),
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        title=title or f"{model_name}: UniMedVL for medical image understanding and generation",
        summary=(
            "UniMedVL is a unified medical vision-language model (the authors' release has 14B parameters): one set "
            "of weights both "
            "**understands** medical images (visual question answering, report drafting) and **generates** them "
            "(text-to-image over 8 modalities, virtual staining, super-resolution, modality translation, "
            "counterfactuals). This repository packages it as a native Hugging Face model."
        ),
        num_parameters=format_parameters(facts.num_parameters) if facts.num_parameters else None,
        weight_dtypes=", ".join(facts.weight_dtypes),
        base_model_id=base if base and not facts.adapter_base_model else None,
        is_conversion=not facts.is_original_layout and base == RELEASE_REPO_ID,
        files_summary=_files_summary(facts),
        has_pipeline_files=facts.has_pipeline_files,
        adapter_base_model=facts.adapter_base_model,
        repo_id=repo_id,
        paper_results=[dict(zip(("task", "benchmark", "metric", "value"), row, strict=True)) for row in PAPER_RESULTS],
        measured_results=[
            {
                "task": result.task_name,
                "dataset": result.dataset_name + (f" ({result.dataset_config})" if result.dataset_config else ""),
                "split": result.split,
                "examples": result.num_examples if result.num_examples is not None else "",
                "metric": result.metric_name or result.metric_type,
                "value": f"{result.value:g}",
            }
            for result in measured
        ],
        measured_models=list(eval_results.models) if eval_results is not None else [],
        dataset_card_note=(
            f"The data format used for training is documented in "
            f"[`{dataset_repo_id}`](https://huggingface.co/datasets/{dataset_repo_id})."
            if dataset_repo_id
            else "The training data format of this project is documented by its dataset card (`unimedvl card` "
            "writes it)."
        ),
        license_text=_license_text(license),
        citation=CITATION,
    )
    return card


def _license_text(license: str) -> str:
    return (
        f"The card's metadata declares `{license}`. The `unimedvl` code, including the modelling files in this "
        "repository, is released under the Apache License 2.0. The UniMedVL weights are distributed by their authors "
        f"under the licence stated on [{RELEASE_REPO_ID}](https://huggingface.co/{RELEASE_REPO_ID}) (Apache-2.0 when "
        "this card was written; check it there), and BAGEL, which they build on, under its own licence. The training "
        "data keep their sources' licences (see *Training data*). Research use only: see *Out-of-scope use*."
    )


DATASET_COLUMNS = (
    (
        "messages",
        "list of turns",
        "yes",
        "turns `{'role', 'content'}`: role `system`, `user` or `assistant`; content a string or a list of "
        "text / image items",
    ),
    (
        "images",
        "list of images",
        "if user turns hold image items",
        "conditioning images, in order of the image items of system/user turns",
    ),
    (
        "output_images",
        "list of images",
        "if assistant turns hold image items",
        "generation targets, in order of the image items of assistant turns",
    ),
    ("task", "string", "no", "`understanding`, `generation` or `interleaved` (inferred when absent)"),
    ("modality", "string", "no", "e.g. `CT`, `MRI`, `chest X-ray`, `histopathology`"),
    ("source", "string", "no", "the dataset (and version) the sample comes from"),
    ("license", "string", "no", "licence of the source (SPDX id where one exists)"),
    ("group_id", "string", "no", "patient / study identifier (pseudonymised) keeping related samples in one split"),
)

DATASET_EXAMPLES = (
    (
        "Understanding (VQA)",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which organ is shown?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "The liver."}]},
            ],
            "images": ["ct/0001.dcm"],
            "task": "understanding",
            "modality": "CT",
            "license": "CC-BY-4.0",
        },
    ),
    (
        "Generation (text-to-image)",
        {
            "messages": [
                {"role": "user", "content": "A PA chest X-ray image showing a right pleural effusion."},
                {"role": "assistant", "content": [{"type": "image"}]},
            ],
            "output_images": ["cxr/0042.png"],
            "task": "generation",
            "modality": "chest X-ray",
        },
    ),
    (
        "Interleaved (image-conditioned generation)",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {
                            "type": "text",
                            "text": "Translate this T2-weighted MRI image into a FLAIR image of the same slice.",
                        },
                    ],
                },
                {"role": "assistant", "content": [{"type": "image"}]},
            ],
            "images": ["mri/t2/0007.nii.gz"],
            "output_images": ["mri/flair/0007.nii.gz"],
            "task": "interleaved",
            "modality": "MRI",
            "group_id": "subject-0007",
        },
    ),
)


def build_dataset_card(
    pretty_name: str = "UniMedVL training data (sample schema)",
    license: str = "other",
    license_note: str = "declared as `other` in the metadata until the sources are fixed",
) -> DatasetCard:
    """The dataset card of the project's training-data schema (for a Hub dataset stored in that schema)."""
    card_data = DatasetCardData(
        language=["en"],
        license=license,
        pretty_name=pretty_name,
        task_categories=["visual-question-answering", "image-to-text", "text-to-image", "image-to-image"],
        tags=["medical", "unimedvl", "multimodal"],
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(DATASET_CARD_TEMPLATE),
        pretty_name=pretty_name,
        summary=(
            "Medical multimodal training samples in the schema that `unimedvl`'s training code reads: typed chat "
            "messages plus input and output images, covering understanding (image → text), generation (text → image) "
            "and interleaved (image + text → image) tasks."
        ),
        columns=[dict(zip(("name", "type", "required", "meaning"), column, strict=True)) for column in DATASET_COLUMNS],
        examples=[{"title": title, "json": _compact_json(example)} for title, example in DATASET_EXAMPLES],
        license_note=license_note,
        citation=CITATION,
    )


def _compact_json(row: dict) -> str:
    """One line per column: readable examples that are still valid JSON."""
    return "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in row.items()) + "\n}"


def write_cards(
    checkpoint: str | os.PathLike,
    repo_id: str | None = None,
    eval_results_path=None,
    dataset_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    **model_card_kwargs,
) -> tuple[Path, Path]:
    """Write the model card as `CHECKPOINT/README.md` and the dataset card as `DATASET_DIR/README.md` (default: a
    `<checkpoint name>-dataset` folder next to the checkpoint). `eval_results_path`: one or several `results.json`
    of the evaluation runner. Returns both paths.

    Raises:
        FileExistsError: a card exists and `overwrite` is False.
        FileNotFoundError: no checkpoint folder.
        EvalResultsError: a bad results file.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {checkpoint}")
    dataset_dir = (
        Path(dataset_dir)
        if dataset_dir is not None
        else checkpoint.resolve().parent / f"{checkpoint.resolve().name}-dataset"
    )
    model_path, dataset_path = checkpoint / "README.md", dataset_dir / "README.md"
    for path in (model_path, dataset_path):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    report = load_eval_results(eval_results_path) if eval_results_path is not None else None
    model_card = build_model_card(checkpoint, repo_id=repo_id, eval_results=report, **model_card_kwargs)
    dataset_card = build_dataset_card()
    model_card.save(model_path)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    dataset_card.save(dataset_path)
    return model_path, dataset_path


REQUIRED_MODEL_CARD_SECTIONS = (
    "## Intended use",
    "## Out-of-scope use",
    "## Limitations and biases",
    "## Training data and curriculum",
    "## Evaluation",
    "## How to use",
    "## License",
    "## Citation",
)


__all__ = [
    "CITATION",
    "PAPER_RESULTS",
    "REQUIRED_MODEL_CARD_SECTIONS",
    "CheckpointFacts",
    "EvalReport",
    "EvalResultsError",
    "MeasuredResult",
    "build_dataset_card",
    "build_model_card",
    "count_parameters",
    "inspect_checkpoint",
    "load_eval_results",
    "parse_eval_results",
    "write_cards",
]
