"""`unimedvl eval`: the command line end to end, offline, on the tiny reference checkpoint and a tiny local dataset."""

import json

import datasets
import pytest

from unimedvl import load_image
from unimedvl.cli import main
from unimedvl.commands.eval import default_output_dir


@pytest.fixture(scope="module")
def slake_like(tmp_path_factory, reference_dir):
    """A Hub-style parquet dataset with SLAKE's columns (`q_lang`, `answer_type`, `modality`, `qid`), 4 questions."""
    folder = tmp_path_factory.mktemp("cli") / "slake"
    (folder / "data").mkdir(parents=True)
    mr = load_image(reference_dir / "images" / "mr_small.png")
    table = {
        "qid": [1, 2, 3, 4],
        "image": [mr] * 4,
        "q": ["Is this an MRI?", "Is this an MRI?", "Which organ?", "Any lesion?"],
        "answer": ["Yes", "是", "Brain", "No"],
        "answer_type": ["CLOSED", "CLOSED", "OPEN", "CLOSED"],
        "q_lang": ["en", "zh", "en", "en"],
        "modality": ["MRI"] * 4,
    }
    dataset = datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())
    dataset.to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    return folder


def test_eval_vqa_runs_offline_end_to_end(tmp_path, slake_like, reference_checkpoint, capsys):
    output_dir = tmp_path / "out"
    argv = [
        "eval", "vqa", "--model", str(reference_checkpoint), "--dataset", str(slake_like), "--question-column", "q",
        "--batch-size", "2", "--max-new-tokens", "3", "--dtype", "float32", "--device", "cpu", "-o", str(output_dir),
        "--html",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "SLAKE (test), 3 examples" in out and "Closed-question accuracy" in out and "[MRI]" in out
    results = json.loads((output_dir / "results.json").read_text())
    assert results["benchmark"] == "SLAKE" and results["protocol"]["columns"]["question"] == "q"
    assert [json.loads(line)["id"] for line in (output_dir / "predictions.jsonl").read_text().splitlines()] == [
        "1", "3", "4",
    ]  # fmt: skip
    assert (output_dir / "report.html").is_file()

    # The same command again resumes: nothing left to predict, same results.
    assert main(argv) == 0
    assert json.loads((output_dir / "results.json").read_text())["metrics"] == results["metrics"]


def test_eval_bad_input_is_a_one_line_error(tmp_path, slake_like, capsys):
    base = ["eval", "vqa", "--dataset", str(slake_like), "-o", str(tmp_path / "out")]
    assert main([*base, "--benchmark", "vqa-med"]) == 2
    assert "error: Unknown vqa benchmark 'vqa-med'; known vqa benchmarks: vqa, slake" in capsys.readouterr().err
    assert main([*base, "--benchmark", "slake"]) == 2
    assert "pass --question-column" in capsys.readouterr().err
    assert main(["eval", "t2i", "--dataset", str(slake_like), "--height", "60"]) == 2
    assert "--height must be a multiple of 16" in capsys.readouterr().err
    assert main(["eval", "i2i", "--dataset", str(slake_like), "--field", "target"]) == 2
    assert "--field expects KEY=VALUE" in capsys.readouterr().err


def test_eval_lists_the_four_families(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    assert all(f"    {family} " in usage for family in ("vqa", "report", "t2i", "i2i"))


def test_default_output_dir_is_stable_per_family_dataset_and_split():
    assert str(default_output_dir("vqa", "BoKelvin/SLAKE", "test")) == "eval-results/vqa-SLAKE-test"
    assert str(default_output_dir("t2i", "./data/eval generation.parquet", "train")).endswith(
        "t2i-eval_generation.parquet-train"
    )
