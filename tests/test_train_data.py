"""Training data: the sample schema, readers (local formats, streaming, UniMed-5M), mixture ratios, condition dropout,
packing, bad inputs, and the shipped demo set."""

import io
import json
import pathlib
import random
import tarfile

import datasets
import numpy as np
import pytest
from PIL import Image
from transformers import AutoTokenizer
from unimedvl.train.config import DataArguments, DatasetArguments
from unimedvl.train.demo_data import build_demo_dataset
from unimedvl.train.mixture import build_mixture
from unimedvl.train.packing import LongSampleError, SampleEncoder, TokenBudgetPacker, collate_packed
from unimedvl.train.readers import load_training_dataset
from unimedvl.train.schema import ImageDecodeError, SampleSchemaError, decode_image, normalize_sample

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "train" / "configs"


@pytest.fixture(autouse=True)
def no_arrow_shutdown_sleep(monkeypatch):
    # `datasets` sleeps 5 s whenever a multi-file parquet stream closes (an Arrow threading workaround); the tiny
    # sources here end an epoch every few draws.
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(CONFIGS / "tiny_tokenizer")


def data_args(**overrides) -> DataArguments:
    values = dict(datasets=[DatasetArguments(path="unused")], text_cond_dropout=0.0, vit_cond_dropout=0.0,
                  vae_cond_dropout=0.0, vit_resize=[56, 28, 14, 3136], vae_resize=[64, 32, 16, 4096],
                  max_tokens_per_step=200, max_tokens_hard_cap=256, max_tokens_per_sample=256)
    values.update(overrides)
    return DataArguments(**values)


def encoder(tokenizer, **overrides) -> SampleEncoder:
    return SampleEncoder(tokenizer, data_args(**overrides), latent_downsample=16, max_latent_size=16)


def png(path: pathlib.Path, size=(40, 32), value=128) -> str:
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return str(path)


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def vqa_row(image: str, question="Which organ?", answer="The liver.") -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}], "images": [image]}


def t2i_row(image: str, caption="An axial CT slice.") -> dict:
    return {"messages": [{"role": "user", "content": caption},
                         {"role": "assistant", "content": [{"type": "image"}]}], "output_images": [image]}


# ---------------------------------------------------------------------------------------------------------------------
# Schema and readers
# ---------------------------------------------------------------------------------------------------------------------


def test_missing_column_names_column_dataset_and_sample(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"conversations": [], "images": []}] * 2)
    with pytest.raises(SampleSchemaError) as error:
        next(iter(load_training_dataset(path, label="mydata")))
    message = str(error.value)
    assert "dataset 'mydata' sample 0" in message and "'messages'" in message and "conversations" in message


def test_column_mapping_and_image_count_check(tmp_path):
    image = png(tmp_path / "a.png")
    row = vqa_row(image)
    path = write_jsonl(tmp_path / "d.jsonl", [{"conv": row["messages"], "imgs": row["images"]}])
    sample = next(iter(load_training_dataset(path, columns={"messages": "conv", "images": "imgs"})))
    assert sample["task"] == "understanding" and sample["images"] == [image]
    with pytest.raises(SampleSchemaError, match="sample 3: column 'images' holds 2 image"):
        normalize_sample({**row, "images": [image, image]}, "sample 3")
    with pytest.raises(SampleSchemaError, match="role"):
        normalize_sample({"messages": [{"role": "doctor", "content": "hi"}]})
    with pytest.raises(SampleSchemaError, match="nothing to learn"):
        normalize_sample({"messages": [{"role": "user", "content": "hi"}]})


def test_task_inference():
    image = "x.png"
    assert normalize_sample(vqa_row(image))["task"] == "understanding"
    assert normalize_sample(t2i_row(image))["task"] == "generation"
    edit = {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Stain it."}]},
                         {"role": "assistant", "content": [{"type": "image"}]}],
            "images": [image], "output_images": [image]}
    assert normalize_sample(edit)["task"] == "interleaved"


def test_unimed5m_jsonl_adapter(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    png(root / "he.png"), png(root / "ihc.png"), png(root / "cxr.png"), png(root / "cf.png")
    rows = [
        {"message": [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "A chest X-ray."}],
         "input_img": [{"path": "cxr.png", "height": 32, "width": 40}], "output_img": [],
         "main_task_type": "vqa", "dataset": "demo"},
        {"message": [{"from": "human", "value": "<image>Convert H&E to HER2 IHC."}, {"from": "gpt", "value": "Done."}],
         "input_img": [{"path": "he.png", "height": 32, "width": 40}],
         "output_img": [{"path": "ihc.png", "height": 32, "width": 40}]},
        {"message": [{"from": "human", "value": "<image>Remove the effusion."},
                     {"from": "gpt", "value": "<image>The effusion is gone."}],
         "input_img": [{"path": "cxr.png"}], "output_img": [{"path": "cf.png"}]},
    ]
    path = write_jsonl(tmp_path / "unimed.jsonl", rows)
    samples = list(load_training_dataset(path, format="unimed5m", image_root=str(root)))
    vqa, edit, counterfactual = samples
    assert vqa["task"] == "understanding" and vqa["images"] == [str(root / "cxr.png")]
    assert vqa["messages"][0]["content"] == [{"type": "image"}, {"type": "text", "text": "What is shown?"}]
    assert vqa["source"] == "demo/vqa"
    # Editing: answer text, then the output image; counterfactual: the image where `<image>` stands, then the text.
    assert edit["task"] == "interleaved"
    assert [item["type"] for item in edit["messages"][1]["content"]] == ["text", "image"]
    assert [item["type"] for item in counterfactual["messages"][1]["content"]] == ["image", "text"]
    assert counterfactual["output_images"] == [str(root / "cf.png")]


def test_unimed5m_t2i_parquet_adapter(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(buffer, format="PNG")
    captions = json.dumps({"short": "A CT.", "long": "An axial CT of the chest."})
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.Value("string")})
    table = datasets.Dataset.from_dict({"image": [{"bytes": buffer.getvalue(), "path": None}] * 3,
                                        "captions": [captions] * 3}, features=features)
    table.to_parquet(tmp_path / "t2i.parquet")
    first = list(load_training_dataset(str(tmp_path / "t2i.parquet"), format="unimed5m_t2i"))
    second = list(load_training_dataset(str(tmp_path / "t2i.parquet"), format="unimed5m_t2i"))
    assert [s["messages"][0]["content"][0]["text"] for s in first] == \
        [s["messages"][0]["content"][0]["text"] for s in second]  # one caption per row, chosen deterministically
    assert first[0]["messages"][0]["content"][0]["text"] in ("A CT.", "An axial CT of the chest.")
    image = first[0]["output_images"][0]
    assert isinstance(image, dict) and image["bytes"] is not None  # not decoded by datasets
    assert decode_image(image).getpixel((0, 0)) == (10, 20, 30)


def test_imagefolder_and_webdataset_streaming(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    png(folder / "a.png"), png(folder / "b.png", value=20)
    write_jsonl(folder / "metadata.jsonl", [{"file_name": "a.png", "text": "A bright phantom."},
                                            {"file_name": "b.png", "text": "A dark phantom."}])
    samples = list(load_training_dataset(str(folder), format="caption", streaming=True))
    assert sorted(s["messages"][0]["content"][0]["text"] for s in samples) == ["A bright phantom.", "A dark phantom."]
    assert all(s["task"] == "generation" for s in samples)

    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, caption in (("s0", "Axial CT."), ("s1", "Sagittal MRI.")):
            for suffix, payload in (("png", (folder / "a.png").read_bytes()), ("txt", caption.encode())):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    samples = list(load_training_dataset(str(shard), format="caption", streaming=True,
                                         columns={"image": "png", "text": "txt"}))
    assert [s["messages"][0]["content"][0]["text"] for s in samples] == ["Axial CT.", "Sagittal MRI."]
    assert decode_image(samples[0]["output_images"][0]).size == (40, 32)
    with pytest.raises(SampleSchemaError, match="column 'jpg' \\(the 'image' column\\) is missing"):
        next(iter(load_training_dataset(str(shard), format="caption", streaming=True,
                                        columns={"image": "jpg", "text": "txt"})))


def test_decode_image_inputs(tmp_path):
    from pydicom.data import get_testdata_file

    dicom_path = get_testdata_file("MR_small.dcm")
    from_path = decode_image(dicom_path)
    from_bytes = decode_image({"bytes": pathlib.Path(dicom_path).read_bytes(), "path": None})
    assert from_path.mode == "RGB" and np.array_equal(np.asarray(from_path), np.asarray(from_bytes))
    png(tmp_path / "a.png", value=7)
    assert decode_image("a.png", image_root=str(tmp_path)).getpixel((0, 0)) == (7, 7, 7)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ImageDecodeError, match="bad.png"):
        decode_image(str(tmp_path / "bad.png"))
    with pytest.raises(ImageDecodeError):
        decode_image(b"garbage bytes")


# ---------------------------------------------------------------------------------------------------------------------
# Sequence layout and condition dropout
# ---------------------------------------------------------------------------------------------------------------------


class AlwaysDrop(random.Random):
    """An RNG whose `random()` is always 0: every droppable block is dropped."""

    def random(self):
        return 0.0


def test_interleaved_layout_positions_and_losses(tmp_path, tokenizer):
    image = png(tmp_path / "a.png", size=(32, 32))
    sample = normalize_sample({
        "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Flip it."}]},
                     {"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "Flipped."}]}],
        "images": [image], "output_images": [image]})
    encoded = encoder(tokenizer).encode(sample, random.Random(0))
    # clean VAE (2x2 tokens) → ViT (2x2 patches at 28 px) → instruction → noised target → its clean copy → answer
    assert encoded.latent_timesteps[0] == 0.0 and encoded.latent_targets == [False, True, False]
    assert 0 < encoded.latent_timesteps[1] < 1 and encoded.latent_timesteps[2] == 0.0
    positions = encoded.position_ids
    instruction = len(tokenizer.encode("Flip it.", add_special_tokens=False)) + 2
    blocks = [6, 6, instruction, 6, 6]  # 4 latent / 4 patch tokens + 2 markers per image block
    starts = np.cumsum([0, *blocks])
    assert positions[starts[0]] == 0 and positions[starts[1]] == 1 and positions[starts[2]] == 2
    target_position = 2 + instruction
    assert positions[starts[3]:starts[4]] == [target_position] * 6  # the noised target does not advance RoPE...
    assert positions[starts[4]:starts[5]] == [target_position] * 6  # ...its clean copy reuses the position
    assert positions[starts[5]] == target_position + 1
    labelled = [i for i, label in enumerate(encoded.labels) if label != -100]
    assert labelled == list(range(starts[5] + 1, len(encoded.input_ids)))  # only the answer's ids and <|im_end|>


def test_condition_dropout_follows_the_reference(tmp_path, tokenizer):
    image = png(tmp_path / "a.png", size=(32, 32))
    enc = encoder(tokenizer, text_cond_dropout=0.5, vit_cond_dropout=0.5, vae_cond_dropout=0.5)
    # Generation: the caption is dropped and advances RoPE by 0 (the target sits at position 0).
    t2i = enc.encode(normalize_sample(t2i_row(image)), AlwaysDrop())
    assert t2i.position_ids == [0] * 6 and t2i.latent_targets == [True]
    # Editing: both conditioning images dropped, each still advancing RoPE by 1; the instruction dropped too.
    edit = enc.encode(normalize_sample({
        "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Stain it."}]},
                     {"role": "assistant", "content": [{"type": "image"}]}],
        "images": [image], "output_images": [image]}), AlwaysDrop())
    assert edit.position_ids == [2] * 6 and edit.latent_targets == [True]
    # Understanding samples are never dropped (VLM text and ViT images have no CFG in the reference).
    vqa = enc.encode(normalize_sample(vqa_row(image)), AlwaysDrop())
    assert vqa.vit_grids == [(2, 2)] and any(label != -100 for label in vqa.labels)


# ---------------------------------------------------------------------------------------------------------------------
# Mixture, packing, bad inputs
# ---------------------------------------------------------------------------------------------------------------------


def make_sources(tmp_path, num_rows=40) -> list[DatasetArguments]:
    und_dir, gen_dir = tmp_path / "und", tmp_path / "gen"
    und_dir.mkdir(), gen_dir.mkdir()
    image = png(tmp_path / "a.png", size=(32, 32))
    for shard in range(2):  # a local *directory* of parquet shards, read with streaming=True
        rows = [vqa_row(image, question=f"Question {shard}-{i}?") for i in range(num_rows // 2)]
        datasets.Dataset.from_list(rows).to_parquet(und_dir / f"part-{shard}.parquet")
    write_jsonl(gen_dir / "part-0.jsonl", [t2i_row(image, caption=f"Caption {i}.") for i in range(num_rows)])
    return [DatasetArguments(path=str(und_dir), streaming=True, shuffle_buffer_size=8),
            DatasetArguments(path=str(gen_dir), streaming=True)]


def test_streaming_mixture_matches_ratios(tmp_path):
    specs = make_sources(tmp_path)
    stream = build_mixture(specs, {"understanding": 0.7, "generation": 0.3}, seed=0, shard=0, num_shards=1,
                           shuffle=True)
    tasks = [next(stream)["task"] for _ in range(1000)]  # many epochs of both sources
    assert abs(tasks.count("understanding") / 1000 - 0.7) < 0.05
    assert abs(tasks.count("generation") / 1000 - 0.3) < 0.05


def test_mixture_state_restores_exactly(tmp_path):
    specs = make_sources(tmp_path, num_rows=12)

    def text(sample):
        return json.dumps(sample["messages"])

    stream = build_mixture(specs, {"understanding": 1, "generation": 1}, seed=3, shard=1, num_shards=2, shuffle=True)
    for _ in range(17):  # past an epoch boundary of both sources' shard
        next(stream)
    state = json.loads(json.dumps(stream.state_dict()))
    expected = [text(next(stream)) for _ in range(15)]
    restored = build_mixture(specs, {"understanding": 1, "generation": 1}, seed=3, shard=1, num_shards=2,
                             shuffle=True)
    restored.load_state_dict(state)
    assert [text(next(restored)) for _ in range(15)] == expected


def test_mixture_rejects_ratio_without_data(tmp_path):
    specs = make_sources(tmp_path)
    with pytest.raises(ValueError, match="'interleaved' the ratio 0.2 but no dataset"):
        build_mixture(specs, {"understanding": 1, "generation": 1, "interleaved": 0.2}, 0, 0, 1, True)


def test_packer_budget_and_resume(tmp_path, tokenizer):
    specs = make_sources(tmp_path, num_rows=12)
    args = data_args()

    def packer():
        stream = build_mixture(specs, {"understanding": 1, "generation": 1}, 0, 0, 1, True)
        return TokenBudgetPacker(stream, encoder(tokenizer), args, seed=0)

    first = packer()
    rows = [first.next_row() for _ in range(3)]
    for row in rows:
        tokens = sum(s.num_tokens for s in row)
        assert tokens <= args.max_tokens_hard_cap
        batch = collate_packed(row)
        assert batch["input_ids"].shape[1] == tokens and batch["sample_ids"].max() == len(row) - 1
    state = json.loads(json.dumps(first.state_dict()))
    expected = [collate_packed(first.next_row())["input_ids"].tolist() for _ in range(4)]
    resumed = packer()
    resumed.load_state_dict(state)
    assert [collate_packed(resumed.next_row())["input_ids"].tolist() for _ in range(4)] == expected


def test_bad_images_are_skipped_and_counted_or_stop(tmp_path, tokenizer):
    good = png(tmp_path / "good.png", size=(32, 32))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    path = write_jsonl(tmp_path / "d.jsonl", [vqa_row(str(tmp_path / "corrupt.png")), vqa_row(good)])
    specs = [DatasetArguments(path=path)]

    def packer(on_bad_image):
        stream = build_mixture(specs, {"understanding": 1}, 0, 0, 1, shuffle=False)
        return TokenBudgetPacker(stream, encoder(tokenizer), data_args(on_bad_image=on_bad_image,
                                                                       max_tokens_per_step=20), seed=0)

    skipping = packer("skip")
    rows = [skipping.next_row() for _ in range(3)]
    assert skipping.stats.skipped_bad_images == 3  # the corrupt row once per epoch (one row per epoch here)
    assert all(len(row) == 1 for row in rows)
    with pytest.raises(ImageDecodeError, match=r"draw 0: cannot decode image .*corrupt.png"):
        packer("error").next_row()


def test_long_samples_error_or_skip(tmp_path, tokenizer):
    image = png(tmp_path / "a.png", size=(64, 64))
    path = write_jsonl(tmp_path / "d.jsonl", [vqa_row(image, question="word " * 100), vqa_row(image)])
    specs = [DatasetArguments(path=path)]

    def packer(on_long_sample):
        stream = build_mixture(specs, {"understanding": 1}, 0, 0, 1, shuffle=False)
        return TokenBudgetPacker(stream, encoder(tokenizer), data_args(on_long_sample=on_long_sample,
                                                                       max_tokens_per_sample=60), seed=0)

    with pytest.raises(LongSampleError, match=r"draw 0 has \d+ tokens, more than data.max_tokens_per_sample = 60"):
        packer("error").next_row()
    skipping = packer("skip")
    skipping.next_row()
    assert skipping.stats.skipped_long_samples >= 1


def test_shipped_demo_data_is_reproducible(tmp_path):
    built = build_demo_dataset(tmp_path / "demo")
    shipped = CONFIGS / "tiny_data"
    for name in ("understanding.jsonl", "generation.jsonl", "interleaved.jsonl"):
        assert (built / name).read_text() == (shipped / name).read_text()
    for path in sorted((shipped / "images").iterdir()):
        assert np.array_equal(np.asarray(decode_image(str(path))), np.asarray(decode_image(str(built / "images" /
                                                                                              path.name))))
    rows = [json.loads(line) for line in (shipped / "understanding.jsonl").read_text().splitlines()]
    assert all(row["license"] and row["source"].startswith("pydicom test file") for row in rows)
