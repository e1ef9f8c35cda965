"""Model and dataset cards: metadata parses, required sections are present, numbers are attributed, `unimedvl card`."""

import json
import math
import re

import numpy as np
import pytest
from huggingface_hub import DatasetCard, ModelCard
from safetensors.numpy import save_file

from unimedvl.cli import main as cli_main
from unimedvl.model_cards import (
    CITATION,
    PAPER_RESULTS,
    REQUIRED_MODEL_CARD_SECTIONS,
    EvalResultsError,
    build_dataset_card,
    build_model_card,
    inspect_checkpoint,
    load_eval_results,
    parse_eval_results,
    write_cards,
)


def run_results(model, task_type, task_name, dataset, metrics, split="test", config=None, num_examples=100):
    """A `results.json` of the evaluation runner (the keys the card reads, plus a few it ignores)."""
    dataset_entry = {"name": dataset, "type": f"{dataset}/data", "split": split} | (
        {"config": config} if config else {}
    )
    return {
        "model": model,
        "task": "vqa",
        "benchmark": dataset,
        "split": split,
        "num_examples": num_examples,
        "metrics": {},
        "model_index": [
            {
                "task": {"type": task_type, "name": task_name},
                "dataset": dataset_entry,
                "metrics": [{"type": kind, "value": value, "name": name} for kind, value, name in metrics],
            }
        ],
        "notes": [],
    }


VQA = [("accuracy", 0.7125, "Accuracy"), ("recall", 0.61, "Open-question recall")]
RESULTS = [
    run_results("me/UniMedVL-hf", "visual-question-answering", "Medical visual question answering", "SLAKE", VQA,
                num_examples=1061),
    run_results("me/UniMedVL-hf", "text-to-image", "Medical text-to-image generation", "T2I eval",
                [("fid", 101.5, "gFID (mean over modalities)")], config="cxr"),
]  # fmt: skip


@pytest.fixture
def checkpoint(tmp_path):
    """A converted-layout folder with 3*4 + 5 = 17 parameters (headers are all the card reads)."""
    folder = tmp_path / "UniMedVL-hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "unimedvl"}))
    (folder / "modeling_unimedvl.py").write_text("# custom code\n")
    save_file({"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.float32)}, str(folder / "model.safetensors"))
    return folder


def section(text: str, heading: str) -> str:
    """From `heading` to the next heading of the same or a higher level."""
    start = text.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    following = re.search(rf"^#{{1,{level}}} ", text[start + len(heading) :], flags=re.M)
    return text[start : start + len(heading) + (following.start() if following else len(text))]


def test_model_card_metadata_and_sections(checkpoint):
    card = build_model_card(checkpoint, repo_id="me/UniMedVL-hf", eval_results=parse_eval_results(RESULTS))
    parsed = ModelCard(str(card))  # round trip through the Hub's own parser
    data = parsed.data
    assert data.license == "apache-2.0" and data.library_name == "transformers" and data.pipeline_tag == "any-to-any"
    assert data.base_model == "General-Medical-AI/UniMedVL"
    assert {"medical", "custom_code"} <= set(data.tags)
    assert [(r.task_type, r.dataset_name, r.metric_type, r.metric_value) for r in data.eval_results] == [
        ("visual-question-answering", "SLAKE", "accuracy", 0.7125),
        ("visual-question-answering", "SLAKE", "recall", 0.61),
        ("text-to-image", "T2I eval", "fid", 101.5),
    ]
    assert data.eval_results[2].dataset_type == "T2I eval/data" and data.eval_results[2].dataset_config == "cxr"

    positions = [parsed.text.index(heading) for heading in REQUIRED_MODEL_CARD_SECTIONS]
    assert positions == sorted(positions)
    assert "17 parameters" in parsed.text


def test_reads_what_the_evaluation_runner_writes():
    runners = pytest.importorskip("unimedvl.evaluation.runners")
    from unimedvl.evaluation.data import DatasetSpec

    index = runners.model_index("i2i", "BraTS", DatasetSpec("brats"), {"psnr": 27.29, "ssim": 0.89})
    report = parse_eval_results({"model": "me/x", "num_examples": 5, "model_index": index})
    assert [(r.task_type, r.metric_type, r.value) for r in report.results] == [
        ("image-to-image", "psnr", 27.29),
        ("image-to-image", "ssim", 0.89),
    ]


def test_intended_use_and_out_of_scope_are_explicit(checkpoint):
    text = build_model_card(checkpoint).text
    assert "Research use only" in text
    assert "research" in section(text, "## Intended use").lower()
    out_of_scope = section(text, "## Out-of-scope use").lower()
    assert "clinical decision" in out_of_scope and "diagnosis" in out_of_scope
    limitations = section(text, "## Limitations and biases").lower()
    assert "hallucination" in limitations and "bias" in limitations


def test_training_data_and_curriculum(checkpoint):
    training = section(build_model_card(checkpoint).text, "## Training data and curriculum")
    assert "UniMed-5M" in training
    for row in ("85K | 75 / 25 / 0", "120K | 40 / 45 / 10", "70K | 37 / 35 / 25"):
        assert row in training


def test_paper_numbers_are_attributed_and_kept_apart_from_ours(checkpoint):
    text = build_model_card(checkpoint, eval_results=parse_eval_results(RESULTS)).text
    paper = section(text, "### Reported by the paper")
    ours = section(text, "### Measured by this project")
    assert "reported by the UniMedVL authors" in paper and "not re-measured" in paper
    for expected in (
        "61.9",
        "75.4",
        "53.5",
        "85.8",
        "60.75",
        "96.29",
        "0.706",
        "20.27 / 0.456",
        "27.29 / 0.890",
        "25.07 / 0.882",
    ):
        assert f"| {expected} |" in paper
    assert len(PAPER_RESULTS) == 10
    assert "| SLAKE | test | 1061 | Accuracy | 0.7125 |" in ours and "0.7125" not in paper
    assert "| T2I eval (cxr) | test | 100 | gFID (mean over modalities) | 101.5 |" in ours
    assert "`me/UniMedVL-hf`" in ours  # what the numbers were measured on

    no_results = section(build_model_card(checkpoint).text, "### Measured by this project")
    assert "No measurements" in no_results and "--eval-results" in no_results
    assert ModelCard(str(build_model_card(checkpoint))).data.eval_results is None


def test_how_to_load(checkpoint):
    text = section(build_model_card(checkpoint, repo_id="me/x").text, "## How to use")
    assert 'AutoModelForImageTextToText.from_pretrained(\n    "me/x", trust_remote_code=True' in text
    assert 'DiffusionPipeline.from_pretrained("me/x", trust_remote_code=True' in text
    assert "PeftModel.from_pretrained(base," in text
    assert "no diffusers pipeline files" in text  # this folder has no model_index.json
    (checkpoint / "model_index.json").write_text("{}")
    assert "no diffusers pipeline files" not in build_model_card(checkpoint, repo_id="me/x").text


def test_adapter_checkpoint(tmp_path):
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "me/UniMedVL-hf"}))
    save_file({"lora_A": np.zeros((2, 8), np.float32)}, str(adapter / "adapter_model.safetensors"))
    card = ModelCard(str(build_model_card(adapter, repo_id="me/lora")))
    assert card.data.base_model == "me/UniMedVL-hf" and card.data.base_model_relation == "adapter"
    assert "peft" in card.data.tags
    assert 'PeftModel.from_pretrained(base, "me/lora")' in card.text


def test_sharded_layout_counts_the_indexed_weights_once(tmp_path):
    folder = tmp_path / "converted"
    (folder / "model").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model_index.json").write_text("{}")
    save_file(
        {"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)}, str(folder / "model" / "model.safetensors")
    )
    save_file({"vae": np.zeros(100, np.float32)}, str(folder / "vae" / "diffusion_pytorch_model.safetensors"))
    weight_map = {"a": "model/model.safetensors", "b": "model/model.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    facts = inspect_checkpoint(folder)
    assert facts.num_parameters == 10 and facts.has_pipeline_files and not facts.is_original_layout


def test_original_layout_counts_the_released_weights(reference_checkpoint):
    facts = inspect_checkpoint(reference_checkpoint)
    assert facts.is_original_layout and facts.num_parameters and facts.num_parameters > 0
    assert "ae.safetensors" in facts.files


def test_license_and_citation(checkpoint):
    text = build_model_card(checkpoint).text
    assert "Apache License 2.0" in section(text, "## License")
    citation = " ".join(section(text, "## Citation").split())
    assert "arXiv:2510.15710" in citation
    assert "Unifying Medical Multimodal Understanding and Generation through Observation-Knowledge-Analysis" in citation
    assert CITATION.count("{") == CITATION.count("}")


def with_entry(**changes):
    """A valid run whose model_index entry has `changes` (`dataset__name=None` sets entry["dataset"]["name"])."""
    run = run_results("m", "visual-question-answering", "VQA", "SLAKE", [("accuracy", 0.5, "Accuracy")])
    entry = run["model_index"][0]
    for key, value in changes.items():
        target, _, field = key.partition("__")
        if field:
            entry[target][field] = value
        else:
            entry[target] = value
    return run


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "no evaluation runs"),
        ({"results": []}, "'model_index' list"),
        ({"model_index": ["x"]}, r"model_index\[0\]: expected an object"),
        ({"model_index": [{"task": {"type": "vqa"}}]}, "needs 'task' and 'dataset'"),
        ({"model_index": []}, "no computed metric"),
        (with_entry(metrics=[{"type": "accuracy", "value": math.nan}]), "finite number"),
        (with_entry(metrics=[{"type": "accuracy", "value": True}]), "finite number"),
        (with_entry(metrics=[{"type": "", "value": 1.0}]), "non-empty string"),
        (with_entry(dataset__name=None), "dataset.name"),
        (with_entry(task__type=3), "task.type"),
    ],
)
def test_eval_results_are_validated(data, message):
    with pytest.raises(EvalResultsError, match=message):
        parse_eval_results(data)


def test_eval_results_files(tmp_path):
    with pytest.raises(EvalResultsError, match="not found"):
        load_eval_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EvalResultsError, match="not valid JSON"):
        load_eval_results(bad)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(RESULTS[0]))
    second.write_text(json.dumps([RESULTS[1] | {"model": "other/model"}]))
    report = load_eval_results([first, second])
    assert len(report.results) == 3 and report.models == ("me/UniMedVL-hf", "other/model")
    assert report.results[0].num_examples == 1061


def test_dataset_card_documents_the_schema():
    from unimedvl.train.schema import SCHEMA_KEYS, normalize_sample

    card = DatasetCard(str(build_dataset_card()))
    assert card.data.license == "other"
    assert {"visual-question-answering", "text-to-image", "image-to-image"} <= set(card.data.task_categories)
    for key in SCHEMA_KEYS:
        assert f"| `{key}` |" in card.text, key
    for heading in ("## Dataset structure", "## Personal and sensitive information", "## Licensing", "## Citation"):
        assert heading in card.text
    examples = re.findall(r"```json\n(.*?)\n```", card.text, flags=re.S)
    assert len(examples) == 3
    tasks = [normalize_sample(json.loads(example))["task"] for example in examples]  # the examples follow the schema
    assert tasks == ["understanding", "generation", "interleaved"]


def test_write_cards_next_to_the_checkpoint(checkpoint):
    model_path, dataset_path = write_cards(checkpoint, repo_id="me/x")
    assert model_path == checkpoint / "README.md"
    assert dataset_path == checkpoint.parent / "UniMedVL-hf-dataset" / "README.md"
    assert ModelCard.load(model_path).data.license == "apache-2.0"
    with pytest.raises(FileExistsError):
        write_cards(checkpoint)
    write_cards(checkpoint, overwrite=True)


def test_card_command(checkpoint, tmp_path, capsys):
    first, second = tmp_path / "vqa.json", tmp_path / "t2i.json"
    first.write_text(json.dumps(RESULTS[0]))
    second.write_text(json.dumps(RESULTS[1]))
    argv = ["card", str(checkpoint), "--repo-id", "me/x", "--eval-results", str(first), str(second)]
    assert cli_main([*argv, "--base-model", "none"]) == 0
    card = ModelCard.load(checkpoint / "README.md")
    assert card.data.base_model is None and len(card.data.eval_results) == 3
    assert "Wrote" in capsys.readouterr().out

    assert cli_main(["card", str(checkpoint)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    first.write_text("[]")
    assert cli_main(["card", str(checkpoint), "--overwrite", "--eval-results", str(first)]) == 2
    assert "no evaluation runs" in capsys.readouterr().err
    assert cli_main(["card", str(tmp_path / "missing")]) == 2
