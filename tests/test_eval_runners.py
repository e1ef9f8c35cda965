"""Runners end to end on the tiny reference checkpoint and tiny local datasets in the Hub formats: caching and resume,
results.json / model-index, reports, and the metric numbers checked against independent computations."""

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from unimedvl import UniMedVLForConditionalGeneration, UniMedVLPipeline, load_image
from unimedvl.evaluation import (
    evaluate_image_to_image,
    evaluate_report,
    evaluate_text_to_image,
    evaluate_vqa,
    load_metric,
)
from unimedvl.evaluation.runners import RESULTS_KEYS


REPORTS = json.loads((Path(__file__).parent / "data" / "iu_xray_reports_sample.json").read_text())["reports"]
VQA_ROWS = [
    ("Is there a lesion?", "yes", "CT"),
    ("Which organ is shown?", "brain", "MRI"),
    ("Is this a CT scan?", "yes", "CT"),
    ("Is the liver enlarged?", "no", "CT"),
    ("Where is the mass?", "left frontal lobe", "MRI"),
]


def write_parquet(folder: Path, table: dict, image_columns=("image",)) -> Path:
    """A Hub-style dataset folder: `data/test-00000-of-00001.parquet` with embedded images."""
    (folder / "data").mkdir(parents=True)
    dataset = datasets.Dataset.from_dict(table)
    for column in image_columns:
        dataset = dataset.cast_column(column, datasets.Image())
    dataset.to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    return folder


def tinted(image: Image.Image) -> Image.Image:
    """A colour version of a grey RGB image (green and blue channels darkened)."""
    red, green, blue = image.split()
    return Image.merge("RGB", (red, green.point(lambda value: value // 2), blue.point(lambda value: value // 3)))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def scans(reference_dir):
    return {name: load_image(reference_dir / "images" / f"{name}_small.png") for name in ("ct", "mr")}


@pytest.fixture(scope="module")
def vqa_rad(tmp_path_factory, scans):
    """VQA-RAD's Hub format (`image`, `question`, `answer`) plus a modality column, 5 questions."""
    images = [scans["ct" if modality == "CT" else "mr"] for _, _, modality in VQA_ROWS]
    columns = ("question", "answer", "modality")
    table = {"image": images} | {key: [row[i] for row in VQA_ROWS] for i, key in enumerate(columns)}
    return write_parquet(tmp_path_factory.mktemp("vqa") / "vqa-rad", table)


@pytest.fixture(scope="module")
def generation_set(tmp_path_factory, scans):
    """Text-to-image evaluation set: 3 CT and 3 MRI prompts with their real images."""
    ct, mr = scans["ct"], scans["mr"]
    table = {
        "prompt": ["An axial CT slice of the abdomen."] * 3 + ["An axial T2-weighted MRI of the head."] * 3,
        "image": [ct, ct.rotate(90), ct.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                  mr, mr.rotate(90), mr.transpose(Image.Transpose.FLIP_LEFT_RIGHT)],
        "modality": ["CT"] * 3 + ["MRI"] * 3,
    }  # fmt: skip
    return write_parquet(tmp_path_factory.mktemp("t2i") / "generation_eval", table)


@pytest.fixture(scope="module")
def vqa_run(tmp_path_factory, vqa_rad, reference_checkpoint):
    """One finished VQA run (model given by path, batches of 2): its results and output folder."""
    output_dir = tmp_path_factory.mktemp("vqa_run")
    results = evaluate_vqa(
        str(reference_checkpoint), str(vqa_rad), output_dir=output_dir, batch_size=2, max_new_tokens=4, html=True,
        progress=False,
    )  # fmt: skip
    return results, output_dir


@pytest.fixture
def vqa_copy(vqa_run, tmp_path):
    """A copy of the finished VQA run's folder, to resume or rescore."""
    shutil.copytree(vqa_run[1], tmp_path / "run")
    return tmp_path / "run"


def count_generate_calls(monkeypatch) -> list[int]:
    """Record the batch size of every `UniMedVLForConditionalGeneration.generate` call."""
    calls, generate = [], UniMedVLForConditionalGeneration.generate

    def counting(self, *args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(UniMedVLForConditionalGeneration, "generate", counting)
    return calls


def count_pipeline_calls(monkeypatch) -> list[int]:
    """Record the number of prompts of every `UniMedVLPipeline.__call__`."""
    calls, call = [], UniMedVLPipeline.__call__

    def counting(self, prompt=None, *args, **kwargs):
        calls.append(len(prompt) if isinstance(prompt, list) else 1)
        return call(self, prompt, *args, **kwargs)

    monkeypatch.setattr(UniMedVLPipeline, "__call__", counting)
    return calls


# VQA -------------------------------------------------------------------------------------------------------------


def test_vqa_results_schema_model_index_and_report(vqa_run, vqa_rad):
    results, output_dir = vqa_run
    assert tuple(results) == RESULTS_KEYS
    assert json.loads((output_dir / "results.json").read_text()) == results
    assert results["benchmark"] == "VQA-RAD" and results["split"] == "test" and results["num_examples"] == 5
    records = read_jsonl(output_dir / "predictions.jsonl")
    assert [record["id"] for record in records] == [f"test-{index}" for index in range(5)]
    assert [record["answer_type"] for record in records] == ["closed", "open", "closed", "closed", "open"]
    assert set(results["per_modality"]) == {"CT", "MRI"}
    assert results["per_modality"]["CT"]["num_closed"] == 3 and results["per_modality"]["MRI"]["num_open"] == 2
    (entry,) = results["model_index"]
    assert entry["task"]["type"] == "visual-question-answering"
    assert entry["dataset"] == {"name": "VQA-RAD", "type": str(vqa_rad), "split": "test"}
    assert {metric["name"] for metric in entry["metrics"]} >= {"Closed-question accuracy", "Open-question recall"}
    assert results["protocol"]["columns"]["modality"] == "modality"
    report = (output_dir / "report.md").read_text()
    assert "## Per modality" in report and "| CT | 3 |" in report and "model-index:" in report
    assert "<table>" in (output_dir / "report.html").read_text()


def test_vqa_resumes_from_an_interrupted_jsonl(vqa_run, vqa_copy, vqa_rad, reference_checkpoint, monkeypatch):
    results, _ = vqa_run
    predictions = vqa_copy / "predictions.jsonl"
    complete = read_jsonl(predictions)
    # Interrupted after two records and part of the third: only the last three are predicted again.
    lines = predictions.read_text().splitlines(keepends=True)
    predictions.write_text("".join(lines[:2]) + lines[2][:25])
    calls = count_generate_calls(monkeypatch)
    kwargs = {"output_dir": vqa_copy, "batch_size": 2, "max_new_tokens": 4, "progress": False}
    resumed = evaluate_vqa(str(reference_checkpoint), str(vqa_rad), **kwargs)
    assert calls == [2, 1]
    assert read_jsonl(predictions) == complete
    assert resumed["metrics"] == results["metrics"]

    calls.clear()
    evaluate_vqa(str(reference_checkpoint), str(vqa_rad), **kwargs)
    assert calls == []


def test_vqa_scores_are_recomputed_from_the_cached_predictions(vqa_copy, vqa_rad, reference_checkpoint, monkeypatch):
    """Rewriting the cache with known answers (no model call) gives the hand-computed scores."""
    answers = ["Yes, there is.", "The brain.", "No.", "no", "left lobe"]
    cached = read_jsonl(vqa_copy / "predictions.jsonl")
    records = [record | {"prediction": answer} for record, answer in zip(cached, answers)]
    (vqa_copy / "predictions.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    calls = count_generate_calls(monkeypatch)
    metrics = evaluate_vqa(
        str(reference_checkpoint), str(vqa_rad), output_dir=vqa_copy, max_new_tokens=4, progress=False
    )["metrics"]
    assert calls == []
    assert metrics["closed_accuracy"] == pytest.approx(2 / 3)  # yes ✓, no ✗ (reference yes), no ✓
    # Open: "brain" fully recalled; "left frontal lobe" vs "left lobe" recalls 2 of 3 tokens.
    assert metrics["open_recall"] == pytest.approx((1 + 2 / 3) / 2)
    # Open questions count on exact match after normalisation: "The brain." is "brain", "left lobe" is not.
    assert metrics["accuracy"] == pytest.approx(3 / 5)


def test_changed_settings_are_refused_unless_overwriting(vqa_copy, vqa_rad, reference_checkpoint, monkeypatch):
    calls = count_generate_calls(monkeypatch)
    kwargs = {"output_dir": vqa_copy, "progress": False}
    with pytest.raises(ValueError, match="max_new_tokens: 4 -> 1") as info:
        evaluate_vqa(str(reference_checkpoint), str(vqa_rad), max_new_tokens=1, **kwargs)
    assert type(info.value).__name__ == "CacheMismatchError"
    assert calls == []
    results = evaluate_vqa(str(reference_checkpoint), str(vqa_rad), max_new_tokens=1, limit=1, overwrite=True, **kwargs)
    assert results["num_examples"] == 1 and calls == [1]
    assert len(read_jsonl(vqa_copy / "predictions.jsonl")) == 1


def test_empty_reference_is_the_metric_named_error(tmp_path, scans, reference_checkpoint):
    folder = write_parquet(tmp_path / "qa", {"image": [scans["mr"]], "question": ["Is it normal?"], "answer": [" ? "]})
    with pytest.raises(ValueError, match="empty answer") as info:
        evaluate_vqa(str(reference_checkpoint), str(folder), output_dir=tmp_path / "out", progress=False)
    assert type(info.value).__name__ == "EmptyReferenceError"


# Report generation -----------------------------------------------------------------------------------------------


def test_report_generation_matches_the_metric_on_the_cached_reports(tmp_path, scans, reference_checkpoint):
    table = {
        "id": [report["id"] for report in REPORTS[:4]],
        "image": [scans["ct"], scans["mr"], scans["ct"], scans["mr"]],
        "findings": [report["findings"] for report in REPORTS[:4]],
    }
    folder = write_parquet(tmp_path / "iu_xray", table)
    results = evaluate_report(
        str(reference_checkpoint), str(folder), output_dir=tmp_path / "out", batch_size=4, max_new_tokens=6,
        meteor=False, progress=False,
    )  # fmt: skip
    records = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert [record["id"] for record in records] == table["id"]
    expected = load_metric("radiology_report", keep_in_memory=True).compute(
        predictions=[record["prediction"] for record in records], references=table["findings"], meteor=False
    )
    assert results["metrics"] == {key: value for key, value in expected.items() if key != "unavailable"}
    assert results["unavailable"] == {"meteor": "disabled by meteor=False"}
    assert results["model_index"][0]["task"]["type"] == "image-to-text"


# Text-to-image ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t2i_run(tmp_path_factory, generation_set, reference_checkpoint):
    """A text-to-image run stopped after 4 of the 6 prompts (`--limit 4`), then completed: the results of both
    runs, the prompts each pipeline call received, and the output folder."""
    output_dir = tmp_path_factory.mktemp("t2i_run")
    pipe = UniMedVLPipeline.from_pretrained(reference_checkpoint, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {
        "output_dir": output_dir, "height": 64, "width": 64, "num_inference_steps": 1, "guidance_scale": 1.0,
        "feature_extractor": "pixels", "batch_size": 3, "progress": False,
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = count_pipeline_calls(monkeypatch)
        partial = evaluate_text_to_image(pipe, str(generation_set), limit=4, **kwargs)
        partial_calls = list(calls)
        calls.clear()
        results = evaluate_text_to_image(pipe, str(generation_set), html=True, **kwargs)
    return {"partial": partial, "partial_calls": partial_calls, "results": results, "calls": calls, "dir": output_dir}


def test_text_to_image_fid_per_modality_and_resume(t2i_run):
    partial, output_dir = t2i_run["partial"], t2i_run["dir"]
    assert t2i_run["partial_calls"] == [3, 1]
    assert partial["per_modality"]["MRI"] == {"num_images": 1}
    assert "MRI" in partial["unavailable"]["fid[MRI]"] and "at least 2" in partial["unavailable"]["fid[MRI]"]
    assert partial["metrics"]["fid_modality_mean"] == partial["per_modality"]["CT"]["fid"]

    assert t2i_run["calls"] == [2]  # the 4 cached images are reused
    results = t2i_run["results"]
    records = read_jsonl(output_dir / "predictions.jsonl")
    assert [record["seed"] for record in records] == list(range(6))
    assert all(Image.open(output_dir / record["image"]).size == (64, 64) for record in records)
    per_modality = results["per_modality"]
    assert {per_modality[name]["num_images"] for name in ("CT", "MRI")} == {3}
    assert results["metrics"]["fid_modality_mean"] == pytest.approx(
        (per_modality["CT"]["fid"] + per_modality["MRI"]["fid"]) / 2
    )
    assert "open_clip" in results["unavailable"]["clip_score"]  # no BiomedCLIP offline
    assert any("rank-deficient" in note for note in results["notes"])
    assert [example["modality"] for example in results["examples"]] == ["CT"] * 3 + ["MRI"] * 3
    assert results["model_index"][0]["task"]["type"] == "text-to-image"
    assert "data:image/png;base64," in (output_dir / "report.html").read_text()
    assert '<img src="images/test-0.png"' in (output_dir / "report.md").read_text()


def test_text_to_image_fid_matches_an_independent_frechet_distance(t2i_run, generation_set):
    """The pooled and per-modality FIDs equal the closed form on the `pixels` features (4 x 4 grey means of the
    64 x 64 bicubic resize) recomputed by hand from the saved images and the dataset."""
    from scipy.linalg import sqrtm

    def features(image):
        grey = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC), dtype=np.float64)
        return (grey.mean(axis=-1) / 255).reshape(4, 16, 4, 16).mean(axis=(1, 3)).ravel()

    def frechet(generated, real):
        mean_difference = generated.mean(0) - real.mean(0)
        sigma_g, sigma_r = np.cov(generated, rowvar=False), np.cov(real, rowvar=False)
        return mean_difference @ mean_difference + np.trace(sigma_g + sigma_r - 2 * sqrtm(sigma_g @ sigma_r).real)

    generated = np.stack([features(Image.open(t2i_run["dir"] / f"images/test-{index}.png")) for index in range(6)])
    real = np.stack([features(image) for image in datasets.load_dataset(str(generation_set), split="test")["image"]])
    results = t2i_run["results"]
    assert results["metrics"]["fid"] == pytest.approx(frechet(generated, real), rel=1e-4, abs=1e-6)
    assert results["per_modality"]["MRI"]["fid"] == pytest.approx(frechet(generated[3:], real[3:]), rel=1e-4, abs=1e-6)


def test_too_few_images_for_fid_fail_before_generating(tmp_path, generation_set, monkeypatch):
    calls = count_pipeline_calls(monkeypatch)
    with pytest.raises(ValueError, match="at least 2 generated and 2 real images.* has 1") as info:
        evaluate_text_to_image("no/model", str(generation_set), output_dir=tmp_path, limit=1, progress=False)
    assert type(info.value).__name__ == "TooFewSamplesError"
    assert calls == []


def test_unavailable_inception_extractor_names_the_option(tmp_path, generation_set):
    with pytest.raises(ValueError, match="--feature-extractor") as info:
        evaluate_text_to_image("no/model", str(generation_set), output_dir=tmp_path, progress=False)
    assert type(info.value).__name__ == "FeatureExtractorUnavailableError"


# Image-to-image --------------------------------------------------------------------------------------------------


def test_image_to_image_psnr_ssim_at_the_target_size(tmp_path, scans, reference_checkpoint):
    ct, mr = scans["ct"].resize((64, 64)), scans["mr"]
    low = [image.resize((image.width // 2, image.height // 2)).resize(image.size) for image in (ct, mr, mr)]
    table = {
        "input_image": low,
        "target_image": [ct.convert("L"), tinted(mr), mr.resize((60, 60))],
        "instruction": ["super-resolution", "Sharpen this MRI.", "super-resolution"],
        "modality": ["CT", "MRI", "MRI"],
    }
    folder = write_parquet(tmp_path / "sr", table, image_columns=("input_image", "target_image"))
    results = evaluate_image_to_image(
        str(reference_checkpoint), str(folder), output_dir=tmp_path / "out", num_inference_steps=1, guidance_scale=1.0,
        image_guidance_scale=1.0, html=True, progress=False,
    )  # fmt: skip
    records = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert [record["resized"] for record in records] == [False, False, True]
    assert [record["task"] for record in records] == ["super-resolution", None, "super-resolution"]
    assert "low-resolution CT image" in records[0]["instruction"]  # the preset's modality comes from the row

    # Independent check: scikit-image on the saved outputs, grey for the greyscale target, RGB otherwise.
    expected = []
    for record, target in zip(records, table["target_image"]):
        generated = Image.open(tmp_path / "out" / record["image"])
        assert generated.size == target.size
        rgb = np.asarray(target.convert("RGB"))
        if (rgb == rgb[..., :1]).all():
            pair, axis = (np.asarray(generated.convert("L")), np.asarray(target.convert("L"))), None
        else:
            pair, axis = (np.asarray(generated.convert("RGB")), np.asarray(target.convert("RGB"))), -1
        expected.append((
            peak_signal_noise_ratio(pair[1], pair[0], data_range=255),
            structural_similarity(pair[1], pair[0], data_range=255, channel_axis=axis, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False),
        ))  # fmt: skip
    assert results["metrics"]["psnr"] == pytest.approx(np.mean([psnr for psnr, _ in expected]))
    assert results["metrics"]["ssim"] == pytest.approx(np.mean([ssim for _, ssim in expected]))
    assert results["per_modality"]["CT"]["psnr"] == pytest.approx(expected[0][0])
    assert results["model_index"][0]["task"]["type"] == "image-to-image"
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 9  # input, generated and target of each example
