"""Benchmark adapters: the public VQA benchmarks' Hub formats, read offline from tiny local copies."""

import csv
import json
import shutil

import datasets
import pytest
from pydicom.data import get_testdata_file

from unimedvl import load_image
from unimedvl.evaluation.benchmarks import BENCHMARKS, get_benchmark, read_options
from unimedvl.evaluation.data import DatasetSpec, iter_examples, load_rows, open_images
from unimedvl.evaluation.runners import generation_size, vqa_prompt


def examples_of(spec: DatasetSpec, benchmark: str = "auto"):
    adapter = get_benchmark(benchmark, "vqa", spec.path)
    rows = load_rows(spec)
    columns = adapter.resolve_columns(next(iter(rows)).keys(), spec.columns)
    return adapter, list(iter_examples(rows, columns, spec))


def write_slake(folder, scans):
    """SLAKE's layout: `test.json` (a list of questions) next to `imgs/<img_name>`, English and Chinese rows."""
    (folder / "imgs" / "xmlab1").mkdir(parents=True)
    (folder / "imgs" / "xmlab2").mkdir(parents=True)
    scans["mr"].save(folder / "imgs" / "xmlab1" / "source.jpg")
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "imgs" / "xmlab2" / "source.dcm")
    rows = [
        (11, "xmlab1/source.jpg", "MRI", "en", "Is this a brain scan?", "Yes", "CLOSED"),
        (12, "xmlab1/source.jpg", "MRI", "zh", "这是脑部扫描吗？", "是", "CLOSED"),
        (13, "xmlab1/source.jpg", "MRI", "en", "Which organ is abnormal?", "Brain", "OPEN"),
        (14, "xmlab2/source.dcm", "CT", "en", "Does the image show the abdomen?", "No", "CLOSED"),
        (15, "xmlab2/source.dcm", "CT", "en", "What modality is used?", "CT", "OPEN"),
    ]
    keys = ("qid", "img_name", "modality", "q_lang", "question", "answer", "answer_type")
    (folder / "test.json").write_text(json.dumps([dict(zip(keys, row)) for row in rows], ensure_ascii=False))
    return folder


def write_pmc_vqa(folder, scans):
    """PMC-VQA's layout: `test_2.csv` with `Choice A`..`Choice D` written "A:text", images under `figures/`."""
    (folder / "figures").mkdir(parents=True)
    scans["ct"].save(folder / "figures" / "PMC1_fig1.jpg")
    header = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]
    rows = [
        ["figures/PMC1_fig1.jpg", "What imaging modality is shown?", "CT", " A:MRI ", " B:CT ", " C:X-ray ",
         " D:Ultrasound ", "B"],
        ["figures/PMC1_fig1.jpg", "Which plane is shown?", "Axial", "A: Axial", "B: Sagittal", "C: Coronal",
         "D: Oblique", "A"],
    ]  # fmt: skip
    with (folder / "test_2.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return folder


def write_omnimedvqa(folder, scans):
    """OmniMedVQA's layout: a JSON list with `option_A`.., `gt_answer`, `modality_type` and `image_path`."""
    (folder / "Images" / "ACRIMA").mkdir(parents=True)
    scans["mr"].save(folder / "Images" / "ACRIMA" / "Im001.png")
    rows = [
        {"dataset": "ACRIMA", "question_id": "ACRIMA_0001", "question_type": "Disease Diagnosis",
         "question": "Is glaucoma present?", "gt_answer": "No", "image_path": "Images/ACRIMA/Im001.png",
         "option_A": "Yes", "option_B": "No", "modality_type": "Fundus Photography"},
        {"dataset": "ACRIMA", "question_id": "ACRIMA_0002", "question_type": "Modality Recognition",
         "question": "What is the modality?", "gt_answer": "Fundus", "image_path": "Images/ACRIMA/Im001.png",
         "option_A": "CT", "option_B": "MRI", "option_C": "Fundus", "option_D": "X-ray",
         "modality_type": "Fundus Photography"},
    ]  # fmt: skip
    (folder / "test.json").write_text(json.dumps(rows))
    return folder


@pytest.fixture(scope="module")
def scans(reference_dir):
    return {name: load_image(reference_dir / "images" / f"{name}_small.png") for name in ("ct", "mr")}


def test_slake_keeps_english_questions_and_reads_images_and_dicoms_under_the_image_root(tmp_path, scans):
    folder = write_slake(tmp_path / "Slake1.0", scans)
    spec = DatasetSpec(str(folder), image_root=str(folder / "imgs"))
    adapter, examples = examples_of(spec)
    assert adapter.name == "slake"  # guessed from the folder name
    assert [example["id"] for example in examples] == ["11", "13", "14", "15"]
    assert [example["index"] for example in examples] == [0, 2, 3, 4]  # row numbers before filtering
    assert [example["answer_type"] for example in examples] == ["CLOSED", "OPEN", "CLOSED", "OPEN"]
    assert {example["modality"] for example in examples} == {"MRI", "CT"}
    (ct_from_dicom,) = open_images(examples[2]["image"], spec.default_image_root())
    assert ct_from_dicom.size == (128, 128) and ct_from_dicom.mode == "RGB"

    _, everything = examples_of(DatasetSpec(str(folder), image_root=str(folder / "imgs"), language=None))
    assert len(everything) == 5
    _, limited = examples_of(DatasetSpec(str(folder), image_root=str(folder / "imgs"), limit=2))
    assert [example["id"] for example in limited] == ["11", "13"]


def test_missing_image_root_is_a_named_error_that_names_the_option(tmp_path, scans):
    folder = write_slake(tmp_path / "slake", scans)
    _, examples = examples_of(DatasetSpec(str(folder)))
    with pytest.raises(FileNotFoundError, match="--image-root") as info:
        open_images(examples[0]["image"], DatasetSpec(str(folder)).default_image_root())
    assert type(info.value).__name__ == "ImageNotFoundError"


def test_pmc_vqa_reads_lettered_choices_without_their_prefix_and_letter_answers(tmp_path, scans):
    folder = write_pmc_vqa(tmp_path / "PMC-VQA", scans)
    adapter, examples = examples_of(DatasetSpec(str(folder)))
    assert adapter.name == "pmc-vqa"
    assert examples[0]["options"] == ["MRI", "CT", "X-ray", "Ultrasound"]
    assert examples[1]["options"] == ["Axial", "Sagittal", "Coronal", "Oblique"]
    assert [example["answer"] for example in examples] == ["B", "A"]  # Answer_label, resolved by medical_vqa
    assert vqa_prompt(examples[0]["question"], examples[0]["options"]) == (
        "What imaging modality is shown?\nOptions:\nA. MRI\nB. CT\nC. X-ray\nD. Ultrasound\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_omnimedvqa_reads_two_to_four_options_ids_and_modalities(tmp_path, scans):
    folder = write_omnimedvqa(tmp_path / "OmniMedVQA", scans)
    adapter, examples = examples_of(DatasetSpec(str(folder)))
    assert adapter.name == "omnimedvqa"
    assert [example["options"] for example in examples] == [["Yes", "No"], ["CT", "MRI", "Fundus", "X-ray"]]
    assert [example["id"] for example in examples] == ["ACRIMA_0001", "ACRIMA_0002"]
    assert examples[0]["modality"] == "Fundus Photography" and examples[1]["answer"] == "Fundus"


def test_hub_parquet_layout_with_embedded_images_and_column_overrides(tmp_path, scans):
    """VQA-RAD / PathVQA on the Hub: `data/test-*.parquet` with `image`, `question`, `answer`."""
    folder = tmp_path / "path-vqa"
    (folder / "data").mkdir(parents=True)
    table = {"image": [scans["ct"], scans["mr"]], "q": ["Is this benign?", "What stain?"], "answer": ["no", "H&E"]}
    dataset = datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())
    dataset.to_parquet(folder / "data" / "test-00000-of-00001.parquet")

    with pytest.raises(ValueError, match="pass --question-column") as info:
        examples_of(DatasetSpec(str(folder)), "pathvqa")
    assert type(info.value).__name__ == "MissingColumnError"
    adapter, examples = examples_of(DatasetSpec(str(folder), columns={"question": "q"}), "pathvqa")
    assert adapter.title == "PathVQA"
    assert [example["id"] for example in examples] == ["test-0", "test-1"]
    assert open_images(examples[1]["image"], None)[0].size == scans["mr"].size


def test_duplicate_ids_are_a_named_error(tmp_path, scans):
    folder = write_slake(tmp_path / "slake", scans)
    spec = DatasetSpec(str(folder), columns={"id": "img_name"}, image_root=str(folder / "imgs"))
    with pytest.raises(ValueError, match="occurs twice") as info:
        examples_of(spec)
    assert type(info.value).__name__ == "DuplicateExampleIdError"


def test_unknown_benchmark_is_a_named_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="known vqa benchmarks: vqa, slake, vqa-rad, pathvqa, pmc-vqa") as info:
        get_benchmark("vqa-med", "vqa")
    assert type(info.value).__name__ == "UnknownBenchmarkError"
    with pytest.raises(ValueError, match="known t2i benchmarks: t2i"):
        get_benchmark("slake", "t2i")


@pytest.mark.parametrize(
    ("dataset", "family", "expected"),
    [
        ("BoKelvin/SLAKE", "vqa", "slake"),
        ("flaviagiammarino/vqa-rad", "vqa", "vqa-rad"),
        ("flaviagiammarino/path-vqa", "vqa", "pathvqa"),
        ("xmcmic/PMC-VQA", "vqa", "pmc-vqa"),
        ("/data/OmniMedVQA/QA_information", "vqa", "omnimedvqa"),
        ("someone/chest-qa", "vqa", "vqa"),
        ("runs/slake_copies/vqa_rad", "vqa", "vqa-rad"),
        ("BoKelvin/SLAKE", "t2i", "t2i"),
    ],
)
def test_auto_benchmark_follows_the_dataset_name(dataset, family, expected):
    assert get_benchmark("auto", family, dataset).name == expected


def test_every_adapter_belongs_to_a_family_with_a_generic_fallback():
    for family in ("vqa", "report", "t2i", "i2i"):
        assert BENCHMARKS[family].family == family


def test_options_from_a_list_column_and_custom_templates():
    assert read_options({"options": ["(A) Edema", "B) Mass"]}, "options") == ["Edema", "Mass"]
    assert read_options({"opt_A": "x", "opt_B": "", "opt_C": "z"}, "opt_{letter}") == ["x"]
    assert read_options({"question": "?"}, None) is None
    # A letter that is not the option's own is content, not a prefix.
    assert read_options({"options": ["B: lung"]}, "options") == ["B: lung"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [((64, 64), (64, 64)), ((60, 60), (64, 64)), ((128, 96), (128, 96)), ((2048, 1000), (1024, 496))],
)
def test_generation_size_matches_the_target_when_the_model_can(size, expected):
    assert generation_size(*size) == expected
