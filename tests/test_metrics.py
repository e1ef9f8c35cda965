"""The shipped evaluate metric modules, checked offline against independent computations on real data."""

import importlib
import importlib.util
import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import evaluate
import numpy as np
import pytest
import sacrebleu
import skimage.data
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from rouge_score import rouge_scorer
from skimage.color import rgb2gray
from skimage.filters import gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from unimedvl.evaluation.metrics import METRICS, load_metric, metric_path


REPORTS = json.loads((Path(__file__).parent / "data" / "iu_xray_reports_sample.json").read_text())["reports"]
FINDINGS = [report["findings"] for report in REPORTS]
IMPRESSIONS = [report["impression"] for report in REPORTS]
SSIM_WANG = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}


@pytest.fixture(scope="module")
def metrics():
    """Every shipped metric, loaded once through `load_metric` with the Hub switched off, cached in memory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield {name: load_metric(name, keep_in_memory=True) for name in METRICS}


@contextmanager
def raises_named(error_name, match):
    """Expect a `ValueError` subclass called `error_name` whose message matches `match`."""
    with pytest.raises(ValueError, match=match) as info:
        yield
    assert type(info.value).__name__ == error_name


def module_of(metric):
    """The Python module evaluate imported the metric script as (to reach its helper functions)."""
    return importlib.import_module(type(metric).__module__)


def coco_tokens(text):
    """The tokenisation documented by `radiology_report`: lower-case runs of letters and digits."""
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def degraded(image, sigma, noise, seed):
    """Blur and add Gaussian noise to a uint8 image, back in uint8."""
    channel_axis = -1 if image.ndim == 3 else None
    blurred = gaussian(image, sigma=sigma, channel_axis=channel_axis, preserve_range=True)
    noisy = blurred + np.random.default_rng(seed).normal(scale=noise, size=image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# Loading ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METRICS)
def test_module_loads_offline_from_its_folder_and_script(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for path in (metric_path(name), str(Path(metric_path(name)) / f"{name}.py")):
        metric = evaluate.load(path)
        assert isinstance(metric, evaluate.Metric)
        assert metric.description and metric.citation and metric.inputs_description
        assert {"predictions", "references"} <= set(
            metric.features[0] if isinstance(metric.features, list) else metric.features
        )


def test_unknown_metric_name_is_refused():
    with pytest.raises(ValueError, match="shipped metrics are"):
        metric_path("bleu")


# medical_vqa -----------------------------------------------------------------------------------------------------

OPTIONS = ["Edema", "Pneumonia", "Atelectasis"]


@pytest.mark.parametrize(
    ("prediction", "reference", "options", "correct"),
    [
        ("Yes.", "yes", None, True),
        ("Yes, there is a nodule in the right lung.", "Yes", None, True),
        ("yeah", "yes", None, True),
        ("NO!", "no", None, True),
        ("There is no pleural effusion.", "no", None, True),
        ("No, yes", "yes", None, False),
        ("yes", "no", None, False),
        ("The lesion is benign", "yes", None, False),
        ("B", "Pneumonia", OPTIONS, True),
        ("(b)", "Pneumonia", OPTIONS, True),
        ("B.", "Pneumonia", OPTIONS, True),
        ("B) Pneumonia", "Pneumonia", OPTIONS, True),
        ("Answer: B", "Pneumonia", OPTIONS, True),
        ("The answer is b", "Pneumonia", OPTIONS, True),
        ("pneumonia.", "B", OPTIONS, True),
        ("A pneumonia", "Pneumonia", OPTIONS, True),
        ("A", "Pneumonia", OPTIONS, False),
        ("D", "Pneumonia", OPTIONS, False),
        ("Atelectasis", "Pneumonia", OPTIONS, False),
        ("the X-ray, of the chest", "x ray of chest", ["x ray of chest", "ct"], True),
    ],
)
def test_closed_question_normalisation(metrics, prediction, reference, options, correct):
    result = metrics["medical_vqa"].compute(predictions=[prediction], references=[reference], options=[options])
    assert result["num_closed"] == 1
    assert result["closed_accuracy"] == float(correct)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("The Left Lung.", "left lung"), ("x-ray", "x ray"), ("  An  MRI, T2-weighted ", "mri t2 weighted")],
)
def test_answer_normalisation(metrics, text, normalized):
    assert module_of(metrics["medical_vqa"]).normalize_answer(text) == normalized


def test_open_questions_against_hand_computed_recall_and_f1(metrics):
    predictions = ["the left lower lobe", "lung", "heart", "Liver."]
    references = ["right lower lobe", "left lung", "liver", "liver"]
    # Normalised token overlaps: 2 of 3 (P = R = 2/3), 1 of 2 (R = 1/2, P = 1), none, and an exact match.
    recalls = [2 / 3, 1 / 2, 0.0, 1.0]
    f1s = [2 / 3, 2 * 1 * (1 / 2) / (1 + 1 / 2), 0.0, 1.0]
    result = metrics["medical_vqa"].compute(predictions=predictions, references=references)
    assert result["num_open"] == 4 and result["num_closed"] == 0 and result["closed_accuracy"] is None
    assert result["open_recall"] == pytest.approx(np.mean(recalls), abs=1e-12)
    assert result["open_f1"] == pytest.approx(np.mean(f1s), abs=1e-12)
    assert result["exact_match"] == result["accuracy"] == 0.25


def test_mixed_questions_and_explicit_answer_types(metrics):
    result = metrics["medical_vqa"].compute(
        predictions=["Yes.", "C", "right lung", "left kidney"],
        references=["yes", "Atelectasis", "right lung", "kidney"],
        options=[None, OPTIONS, None, None],
        answer_types=["closed", "closed", "open", "closed"],
    )
    assert (result["num_questions"], result["num_closed"], result["num_open"]) == (4, 3, 1)
    assert result["closed_accuracy"] == pytest.approx(2 / 3)
    assert result["accuracy"] == 0.75
    assert result["open_recall"] == result["open_f1"] == 1.0
    assert result["exact_match"] == 0.5


def test_medical_vqa_bad_inputs(metrics):
    vqa = metrics["medical_vqa"]
    with raises_named("InputLengthError", "3 predictions but 2 references"):
        vqa.compute(predictions=["yes", "no", "no"], references=["yes", "no"])
    with raises_named("InputLengthError", "answer_types has 1 entries but there are 2"):
        vqa.compute(predictions=["yes", "no"], references=["yes", "no"], answer_types=["closed"])
    with raises_named("EmptyInputError", "empty"):
        vqa.compute(predictions=[], references=[])
    with raises_named("EmptyReferenceError", "Reference 1"):
        vqa.compute(predictions=["yes", "no"], references=["yes", " ?! "])
    with raises_named("AnswerTypeError", "answer_types\\[0\\] is 'yes_no'"):
        vqa.compute(predictions=["yes"], references=["yes"], answer_types=["yes_no"])


# radiology_report ------------------------------------------------------------------------------------------------


def coco_inputs(predictions, references):
    res = {index: [coco_tokens(text)] for index, text in enumerate(predictions)}
    gts = {index: [coco_tokens(text)] for index, text in enumerate(references)}
    return gts, res


def test_report_metrics_match_pycocoevalcap_and_sacrebleu_on_iu_xray(metrics):
    predictions = FINDINGS[1:] + FINDINGS[:1]  # each report scored against the next patient's findings
    result = metrics["radiology_report"].compute(predictions=predictions, references=FINDINGS, meteor=False)

    gts, res = coco_inputs(predictions, FINDINGS)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [result[f"bleu_{n}"] for n in range(1, 5)] == pytest.approx(bleu, abs=1e-12)
    assert result["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    assert result["cider"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    direct = sacrebleu.corpus_bleu(predictions, [FINDINGS], lowercase=True)
    assert result["sacrebleu"] == pytest.approx(direct.score / 100, abs=1e-12)
    assert result["meteor"] is None and result["unavailable"] == {"meteor": "disabled by meteor=False"}
    assert 0.02 < result["bleu_4"] < 0.3  # normal chest reports share some wording, as real generated reports do


def test_report_bleu_and_rouge_agree_with_independent_implementations(metrics):
    predictions = FINDINGS[1:] + FINDINGS[:1]
    result = metrics["radiology_report"].compute(predictions=predictions, references=FINDINGS, meteor=False)
    hypotheses = [coco_tokens(text) for text in predictions]
    references = [coco_tokens(text) for text in FINDINGS]

    # sacreBLEU on the same tokens: another BLEU-4 implementation (geometric mean, brevity penalty, no smoothing).
    bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", smooth_method="none").score / 100
    assert result["bleu_4"] == pytest.approx(bleu, rel=1e-9)

    # rouge-score's LCS precision and recall, combined with pycocoevalcap's beta = 1.2 F-measure.
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    f_scores = []
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        lcs = scorer.score(reference, hypothesis)["rougeL"]
        p, r = lcs.precision, lcs.recall
        f_scores.append(0.0 if p == 0 or r == 0 else (1 + 1.2**2) * p * r / (r + 1.2**2 * p))
    assert result["rouge_l"] == pytest.approx(np.mean(f_scores), abs=1e-12)


def test_report_metrics_rank_identical_above_shuffled(metrics):
    report = metrics["radiology_report"]
    identical = report.compute(predictions=IMPRESSIONS, references=[[text] for text in IMPRESSIONS], meteor=False)
    assert identical["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert identical["rouge_l"] == pytest.approx(1.0)
    assert identical["cider"] > 5.0
    assert identical["sacrebleu"] == pytest.approx(1.0)

    shuffled = report.compute(predictions=IMPRESSIONS[::-1], references=IMPRESSIONS, meteor=False)
    for key in ("bleu_1", "bleu_4", "rouge_l", "cider", "sacrebleu"):
        assert shuffled[key] < identical[key] - 0.2


def test_report_multiple_references_take_the_best_match(metrics):
    report = metrics["radiology_report"]
    single = report.compute(predictions=IMPRESSIONS[:20], references=IMPRESSIONS[20:], meteor=False)
    both = report.compute(
        predictions=IMPRESSIONS[:20],
        references=[[other, own] for other, own in zip(IMPRESSIONS[20:], IMPRESSIONS[:20], strict=True)],
        meteor=False,
    )
    assert both["rouge_l"] == pytest.approx(1.0) and both["rouge_l"] > single["rouge_l"]


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's METEOR needs a Java runtime")
def test_report_meteor_matches_pycocoevalcap(metrics):
    predictions, references = IMPRESSIONS[1:] + IMPRESSIONS[:1], IMPRESSIONS
    result = metrics["radiology_report"].compute(predictions=predictions, references=references)
    direct, _ = Meteor().compute_score(*coco_inputs(predictions, references))
    assert result["unavailable"] == {}
    assert result["meteor"] == pytest.approx(direct, abs=1e-12)
    assert 0.0 < result["meteor"] < 1.0


def test_report_meteor_without_java_is_none_with_a_reason(metrics, monkeypatch):
    monkeypatch.setenv("PATH", "")
    result = metrics["radiology_report"].compute(predictions=IMPRESSIONS[:3], references=IMPRESSIONS[:3])
    assert result["meteor"] is None
    assert "Java" in result["unavailable"]["meteor"]
    assert result["bleu_1"] == pytest.approx(1.0)


def test_radiology_report_bad_inputs(metrics):
    report = metrics["radiology_report"]
    with raises_named("InputLengthError", "2 predictions but 1 references"):
        report.compute(predictions=IMPRESSIONS[:2], references=IMPRESSIONS[:1], meteor=False)
    with raises_named("EmptyInputError", "empty"):
        report.compute(predictions=[], references=[], meteor=False)
    with raises_named("EmptyReferenceError", "of prediction 1 has no word"):
        report.compute(predictions=IMPRESSIONS[:2], references=[IMPRESSIONS[0], "..."], meteor=False)
    with raises_named("EmptyReferenceError", "Prediction 0 has no reference"):
        report.compute(predictions=IMPRESSIONS[:1], references=[[]], meteor=False)


# fid -------------------------------------------------------------------------------------------------------------


def gaussian_parameters(dim, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    sigma1, sigma2 = a @ a.T / dim + 0.5 * np.eye(dim), b @ b.T / dim + 0.5 * np.eye(dim)
    mu1 = rng.normal(size=dim)
    return mu1, sigma1, mu1 + rng.normal(scale=0.5, size=dim), sigma2


def closed_form_frechet(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), using Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2 via eigh."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(values)) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)).sum()
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * cross


def test_fid_matches_closed_form_for_gaussians(metrics):
    n, dim = 20000, 6
    mu1, sigma1, mu2, sigma2 = gaussian_parameters(dim, seed=1234)
    expected = closed_form_frechet(mu1, sigma1, mu2, sigma2)  # 4.459
    rng = np.random.default_rng(0)
    generated, real = rng.multivariate_normal(mu1, sigma1, n), rng.multivariate_normal(mu2, sigma2, n)
    result = metrics["fid"].compute(predictions=list(generated), references=list(real))
    # The plug-in estimate fluctuates: its mean term alone has sd sqrt(4 dmu'(S1 + S2)dmu / n) = 0.038 here, and over
    # 200 seeds the whole estimate had sd 0.056 and bias < 0.001 at this n and dim; 0.3 is about 5 sd.
    mean_term_sd = np.sqrt(4 * (mu1 - mu2) @ (sigma1 + sigma2) @ (mu1 - mu2) / n)
    assert mean_term_sd < 0.06
    assert result["fid"] == pytest.approx(expected, abs=0.3)
    assert (result["num_samples"], result["feature_dim"]) == (n, dim)


def test_fid_of_a_set_with_itself_is_zero(metrics):
    features = list(np.random.default_rng(1).normal(size=(300, 16)))
    assert metrics["fid"].compute(predictions=features, references=features)["fid"] == pytest.approx(0.0, abs=1e-8)


def test_fid_with_a_callable_feature_extractor_on_real_images(metrics):
    rng = np.random.default_rng(2)
    retina = skimage.data.retina()[::8, ::8]
    real = [retina[y : y + 32, x : x + 32] for y, x in rng.integers(0, 140, size=(40, 2))]
    generated = [degraded(patch, sigma=1.0, noise=8.0, seed=index) for index, patch in enumerate(real)]

    def colour_statistics(images):
        return np.stack([np.concatenate([image.mean(axis=(0, 1)), image.std(axis=(0, 1))]) for image in images])

    via_extractor = metrics["fid"].compute(
        predictions=generated, references=real, feature_extractor=colour_statistics, batch_size=16
    )
    via_features = metrics["fid"].compute(
        predictions=list(colour_statistics(generated)), references=list(colour_statistics(real))
    )
    assert via_extractor["fid"] == pytest.approx(via_features["fid"], abs=1e-9)
    assert via_extractor["feature_dim"] == 6 and via_extractor["fid"] > 0


def test_fid_bad_inputs(metrics):
    fid = metrics["fid"]
    features = list(np.random.default_rng(3).normal(size=(20, 4)))
    with raises_named("InputLengthError", "20 generated but 19 real"):
        fid.compute(predictions=features, references=features[:19])
    with raises_named("EmptyInputError", "empty"):
        fid.compute(predictions=[], references=[])
    with raises_named("TooFewSamplesError", "1 sample; FID needs at least 2"):
        fid.compute(predictions=features[:1], references=features[:1])
    with raises_named("NonFiniteFeatureError", "real features hold NaN .* sample 3"):
        fid.compute(predictions=features, references=features[:3] + [np.full(4, np.nan)] + features[4:])
    with raises_named("FeatureShapeError", "1-D vectors of one length"):
        fid.compute(predictions=features[:19] + [np.zeros(5)], references=features)
    with pytest.warns(module_of(fid).RankDeficientCovarianceWarning, match="use at least 5 samples per set"):
        fid.compute(predictions=features[:3], references=features[3:6])


@pytest.mark.parametrize(("extractor", "package"), [("inception", "pytorch_fid"), ("biomedclip", "open_clip")])
def test_fid_builtin_extractor_unavailable_offline_is_a_named_error(metrics, extractor, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    images = [np.zeros((32, 32, 3), dtype=np.uint8)] * 2
    with raises_named("FeatureExtractorUnavailableError", f"feature_extractor='{extractor}' needs"):
        metrics["fid"].compute(predictions=images, references=images, feature_extractor=extractor)


# image_similarity ------------------------------------------------------------------------------------------------


def hand_psnr(reference, prediction, data_range):
    mse = np.mean((reference.astype(np.float64) - prediction.astype(np.float64)) ** 2)
    return 10 * np.log10(data_range**2 / mse)


def test_psnr_ssim_match_scikit_image_on_camera_and_retina(metrics):
    camera = skimage.data.camera()
    retina = skimage.data.retina()[::4, ::4]  # 353 x 353 x 3 fundus photograph
    pairs = [
        (degraded(camera, sigma=1.0, noise=5.0, seed=0), camera, None),
        (degraded(retina, sigma=1.5, noise=3.0, seed=1), retina, -1),
    ]
    for prediction, reference, channel_axis in pairs:
        result = metrics["image_similarity"].compute(
            predictions=[prediction], references=[reference], channel_axis=channel_axis
        )
        assert result["data_range"] == 255.0
        assert result["psnr"] == pytest.approx(hand_psnr(reference, prediction, 255.0), abs=1e-10)
        assert result["psnr"] == pytest.approx(
            peak_signal_noise_ratio(reference, prediction, data_range=255), abs=1e-10
        )
        direct = structural_similarity(reference, prediction, data_range=255, channel_axis=channel_axis, **SSIM_WANG)
        assert result["ssim"] == pytest.approx(direct, abs=1e-12)
        assert 20 < result["psnr"] < 45 and 0.3 < result["ssim"] < 1.0


def test_psnr_ssim_are_averaged_per_image(metrics):
    camera = skimage.data.camera()
    predictions = [degraded(camera, sigma=s, noise=n, seed=k) for k, (s, n) in enumerate([(0.5, 2.0), (2.0, 10.0)])]
    result = metrics["image_similarity"].compute(predictions=predictions, references=[camera, camera])
    expected_psnr = [hand_psnr(camera, prediction, 255.0) for prediction in predictions]
    assert result["psnr_per_image"] == pytest.approx(expected_psnr, abs=1e-10)
    assert result["psnr"] == pytest.approx(np.mean(expected_psnr), abs=1e-10)
    assert result["ssim"] == pytest.approx(np.mean(result["ssim_per_image"]))
    assert result["ssim_per_image"][0] > result["ssim_per_image"][1]


def test_data_range_is_inferred_from_dtype_and_values(metrics):
    camera = skimage.data.camera()
    prediction = degraded(camera, sigma=1.0, noise=5.0, seed=0)
    as_uint8 = metrics["image_similarity"].compute(predictions=[prediction], references=[camera])
    unit = metrics["image_similarity"].compute(predictions=[prediction / 255.0], references=[camera / 255.0])
    signed = metrics["image_similarity"].compute(
        predictions=[prediction / 127.5 - 1.0], references=[camera / 127.5 - 1.0]
    )
    assert (as_uint8["data_range"], unit["data_range"], signed["data_range"]) == (255.0, 1.0, 2.0)
    # PSNR ignores intensity scale and offset once L follows them; SSIM ignores the scale but not the offset.
    assert unit["psnr"] == pytest.approx(as_uint8["psnr"], abs=1e-9)
    assert signed["psnr"] == pytest.approx(as_uint8["psnr"], abs=1e-9)
    assert unit["ssim"] == pytest.approx(as_uint8["ssim"], abs=1e-12)
    direct = structural_similarity(camera / 127.5 - 1.0, prediction / 127.5 - 1.0, data_range=2.0, **SSIM_WANG)
    assert signed["ssim"] == pytest.approx(direct, abs=1e-12)
    explicit = metrics["image_similarity"].compute(
        predictions=[prediction.astype(np.uint16)], references=[camera.astype(np.uint16)], data_range=255
    )
    assert explicit["psnr"] == pytest.approx(as_uint8["psnr"])


def test_images_added_one_by_one_or_in_batches_score_as_one_compute(metrics):
    similarity = metrics["image_similarity"]
    camera = skimage.data.camera()
    predictions = [degraded(camera, sigma=1.0, noise=n, seed=0) for n in (2.0, 4.0, 8.0)]
    whole = similarity.compute(predictions=predictions, references=[camera] * 3)
    similarity.add(prediction=predictions[0], reference=camera)
    similarity.add_batch(predictions=predictions[1:], references=[camera] * 2)
    assert similarity.compute() == whole


def test_image_similarity_bad_inputs(metrics):
    similarity = metrics["image_similarity"]
    camera = skimage.data.camera()
    with raises_named("InputLengthError", "2 predictions but 1 references"):
        similarity.compute(predictions=[camera, camera], references=[camera])
    with raises_named("EmptyInputError", "empty"):
        similarity.compute(predictions=[], references=[])
    with raises_named(
        "ImageShapeError", re.escape("pair 1: prediction has shape (256, 512) but reference has shape (512, 512)")
    ):
        similarity.compute(predictions=[camera, camera[:256]], references=[camera, camera])
    with raises_named("DataRangeError", "dtype uint16"):
        similarity.compute(predictions=[camera.astype(np.uint16)], references=[camera.astype(np.uint16)])
    with raises_named("DataRangeError", "dtype float64, uint8"):
        similarity.compute(predictions=[camera / 255.0], references=[camera])
    with raises_named("DataRangeError", "outside"):
        similarity.compute(predictions=[camera * 1.0], references=[camera * 1.0])
    broken = camera / 255.0
    broken[0, 0] = np.nan
    with raises_named("NonFiniteImageError", "prediction of image pair 0"):
        similarity.compute(predictions=[broken], references=[camera / 255.0])


# clip_score ------------------------------------------------------------------------------------------------------


def image_embedder(images):
    """A fixed random projection of 16 x 16 grayscale thumbnails: a stand-in for an image encoder."""
    projection = np.random.default_rng(10).normal(size=(256, 32))
    thumbnails = [resize(rgb2gray(image) if image.ndim == 3 else image, (16, 16)) for image in images]
    return np.stack(thumbnails).reshape(len(images), -1) @ projection


def text_embedder(texts):
    """Hashed bag of words in 32 dimensions: a stand-in for a text encoder."""
    embeddings = np.zeros((len(texts), 32))
    for row, text in enumerate(texts):
        for word in coco_tokens(text).split():
            embeddings[row, sum(map(ord, word)) % 32] += 1.0
    return embeddings + 0.1


def test_clip_score_is_the_mean_raw_cosine(metrics):
    images = [
        skimage.data.camera(),
        skimage.data.retina()[::4, ::4],
        skimage.data.moon(),
        skimage.data.immunohistochemistry(),
    ]
    prompts = IMPRESSIONS[:4]
    result = metrics["clip_score"].compute(
        predictions=images, references=prompts, image_embedder=image_embedder, text_embedder=text_embedder, batch_size=3
    )
    image_vectors, text_vectors = image_embedder(images), text_embedder(prompts)
    expected = [
        float(i @ t / (np.linalg.norm(i) * np.linalg.norm(t))) for i, t in zip(image_vectors, text_vectors, strict=True)
    ]
    assert result["scores"] == pytest.approx(expected, abs=1e-12)
    assert result["clip_score"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert -1.0 <= result["clip_score"] <= 1.0


def test_clip_score_bad_inputs(metrics):
    clip_score = metrics["clip_score"]
    images, prompts = [skimage.data.camera()] * 2, IMPRESSIONS[:2]
    embedders = {"image_embedder": image_embedder, "text_embedder": text_embedder}
    with raises_named("InputLengthError", "2 predictions \\(images\\) but 1 references"):
        clip_score.compute(predictions=images, references=prompts[:1], **embedders)
    with raises_named("EmptyInputError", "empty"):
        clip_score.compute(predictions=[], references=[], **embedders)
    with raises_named("EmptyReferenceError", "prompt\\) 1 is empty"):
        clip_score.compute(predictions=images, references=[prompts[0], "  "], **embedders)
    with raises_named("NonFiniteEmbeddingError", "image embedding of pair 0"):
        clip_score.compute(
            predictions=images,
            references=prompts,
            image_embedder=lambda x: np.full((len(x), 32), np.nan),
            text_embedder=text_embedder,
        )
    with raises_named("EmbeddingShapeError", "32-d but text embeddings are 8-d"):
        clip_score.compute(
            predictions=images,
            references=prompts,
            image_embedder=image_embedder,
            text_embedder=lambda texts: np.ones((len(texts), 8)),
        )
    with raises_named("EmbedderUnavailableError", "both image_embedder and text_embedder"):
        clip_score.compute(predictions=images, references=prompts, image_embedder=image_embedder)


def test_clip_score_without_biomedclip_offline_is_a_named_error(metrics):
    if importlib.util.find_spec("open_clip") is not None:
        pytest.skip("open_clip is installed")
    with raises_named("EmbedderUnavailableError", "open_clip"):
        metrics["clip_score"].compute(predictions=[skimage.data.camera()], references=IMPRESSIONS[:1])
