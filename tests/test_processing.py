"""UniMedVLProcessor and its image processor against the reference fixture: resize rules, token layouts, inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from unimedvl import UniMedVLProcessor, load_image
from unimedvl.modeling.image_processing_unimedvl import (
    GENERATION_VAE_RESIZE,
    GENERATION_VIT_RESIZE,
    UNDERSTANDING_RESIZE,
    fit_image_size,
)


pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # noqa: E402


CT_DICOM = get_testdata_file("CT_small.dcm")  # the source of the fixture's ct_small.png (window 40 / 400)
IMAGE_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"


def listed_resizes(inputs: dict, images_dir) -> list[tuple[str, tuple, tuple, tuple]]:
    """Every resize the fixture records, as (name, source (w, h), rule, expected (w, h))."""
    vqa, interleave, edit, train = (inputs[case] for case in ("vqa_chat", "vqa_interleave", "edit", "train"))
    vqa_rule = tuple(vqa["vit_transform"][key] for key in ("max_image_size", "min_image_size", "image_stride"))
    train_gen_rule = (*train["gen_vae_transform"], GENERATION_VAE_RESIZE[3])  # default max_pixels

    def size_of(name):
        return Image.open(images_dir / name).size

    vqa_rule = (*vqa_rule, vqa["vit_transform"]["max_pixels"])
    interleave_vae = interleave["vae_resize_size_wh"]
    return [
        ("vqa_chat ViT", vqa["image_size_wh"], vqa_rule, vqa["vit_input_size_wh"]),
        ("vqa_interleave VAE", interleave["image_size_wh"], GENERATION_VAE_RESIZE, interleave_vae),
        ("vqa_interleave ViT", interleave_vae, GENERATION_VIT_RESIZE, interleave["vit_input_size_wh"]),
        ("edit VAE", edit["image_size_wh"], GENERATION_VAE_RESIZE, edit["vae_input_size_wh"]),
        ("edit ViT", edit["vae_input_size_wh"], GENERATION_VIT_RESIZE, edit["vit_input_size_wh"]),
        ("train ViT", size_of(train["und_image"]), UNDERSTANDING_RESIZE, train["und_vit_input_size_hw"][::-1]),
        ("train VAE", size_of(train["gen_image"]), train_gen_rule, train["gen_vae_input_size_hw"][::-1]),
    ]


def test_fit_image_size_reproduces_every_listed_size(reference_inputs, reference_dir):
    resizes = listed_resizes(reference_inputs, reference_dir / "images")
    assert resizes[0][2] == UNDERSTANDING_RESIZE  # the fixture's VQA transform is our default preset
    for name, (width, height), rule, expected in resizes:
        assert fit_image_size(width, height, *rule) == tuple(expected), name


@pytest.mark.parametrize(
    "size, rule, expected",
    [
        ((4000, 3000), UNDERSTANDING_RESIZE, (980, 728)),  # 735 / 14 = 52.5 rounds to even: 52 patches
        ((1000, 1000), (980, 378, 14, 500_000), (504, 504)),  # area cap scales sides by the AREA ratio (quirk)
        ((50, 2000), GENERATION_VAE_RESIZE, (32, 1024)),  # min side, then the long-side cap
    ],
)
def test_fit_image_size_rules(size, rule, expected):
    assert fit_image_size(*size, *rule) == expected


def test_resized_vqa_image_matches_reference_pixels(reference_processor, reference_dir):
    image = Image.open(reference_dir / "images" / "ct_small.png").convert("RGB")
    resized = reference_processor.image_processor.resize_image(image, *UNDERSTANDING_RESIZE)
    expected = Image.open(reference_dir / "preprocessed" / "vqa_chat_vit_input.png").convert("RGB")
    assert resized.tobytes() == expected.tobytes()


def reference_layout(calls: list[dict], image_token_id: int) -> tuple[list[int], list[int]]:
    """Token ids and RoPE positions of the context the reference decoded from, followed through its KV lengths
    (other calls build the CFG contexts), plus the start token."""
    ids, positions, kv_length = [], [], 0
    for call in calls:
        if call["call"] == "prepare_start_tokens":
            return ids + call["packed_start_tokens"], positions + call["packed_query_position_ids"]
        if call["curr_kvlens"] != [kv_length]:
            continue
        if call["call"] == "prepare_vit_images":
            start, end = call["packed_text_ids"]
            block = [start] + [image_token_id] * call["vit_token_seqlens"][0] + [end]
            ids += block
            positions += call["curr_rope"] * len(block)
        else:
            ids += call["packed_text_ids"]
            positions += (
                call["packed_text_position_ids"]
                if isinstance(call["packed_text_position_ids"], list)
                else [call["curr_rope"][0] + offset for offset in range(call["text_token_lens"][0])]
            )
        kv_length = call["new_kvlens"][0]
    raise AssertionError("no prepare_start_tokens call")


@pytest.mark.parametrize("case", ["vqa_chat", "vqa_interleave", "report"])
def test_chat_template_reproduces_reference_token_layout(
    case, reference_processor, reference_model, reference_inputs, reference_dir
):
    spec = reference_inputs[case]
    content = [{"type": "text", "text": spec["prompt"]}]
    processor_kwargs = {}
    if spec.get("image"):
        image = Image.open(reference_dir / "images" / spec["image"]).convert("RGB")
        if case == "vqa_interleave":
            image = reference_processor.image_processor.resize_image(image, *GENERATION_VAE_RESIZE)
            vit_max, vit_min, _, vit_pixels = GENERATION_VIT_RESIZE
            processor_kwargs = {"size": {"longest_edge": vit_max, "shortest_edge": vit_min}, "max_pixels": vit_pixels}
        content.insert(0, {"type": "image", "image": image})
    inputs = reference_processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs=processor_kwargs,
    )
    ids, positions = reference_layout(spec["calls"], reference_processor.image_token_id)
    assert inputs["input_ids"][0].tolist() == ids
    assert reference_model.model.get_position_ids(inputs["input_ids"])[0].tolist() == positions


@pytest.fixture(scope="module")
def ct_png(reference_dir) -> Image.Image:
    return Image.open(reference_dir / "images" / "ct_small.png")


def nifti_volume(ct_png) -> "nibabel.Nifti1Image":
    """A 3-slice volume whose middle axial slice is the CT image (as int16 HU-like values)."""
    grey = np.asarray(ct_png.convert("L"), dtype=np.int16)
    # `nifti_to_array` displays the canonical (x, y) slice S as S[::-1, ::-1].T, so store the inverse of that.
    volume = np.stack([np.zeros_like(grey), grey, np.zeros_like(grey)], axis=-1).transpose(1, 0, 2)[::-1, ::-1]
    return nibabel.Nifti1Image(np.ascontiguousarray(volume), affine=np.eye(4))


def test_processor_accepts_every_input_kind(reference_processor, ct_png, tmp_path):
    """PIL, numpy, PNG path, DICOM path, pydicom Dataset, NIfTI path and nibabel image all reach the model."""
    volume = nifti_volume(ct_png)
    nifti_path = tmp_path / "volume.nii.gz"
    nibabel.save(volume, nifti_path)
    png_path = tmp_path / "ct.png"
    ct_png.save(png_path)
    expected = reference_processor(text=IMAGE_BLOCK, images=ct_png, return_tensors="pt")
    window = {"window": (40.0, 400.0)}  # the window the fixture PNG was made with
    inputs = {
        "PIL": (ct_png, {}),
        "numpy": (np.asarray(ct_png), {}),
        "path": (str(png_path), {}),
        "DICOM path": (CT_DICOM, window),
        "pydicom Dataset": (pydicom.dcmread(CT_DICOM), window),
    }
    for name, (image, kwargs) in inputs.items():
        got = reference_processor(text=IMAGE_BLOCK, images=image, return_tensors="pt", **kwargs)
        assert torch.equal(got["pixel_values"], expected["pixel_values"]), name
        assert torch.equal(got["input_ids"], expected["input_ids"]), name
    identity = {"slice_index": 1, "window": (127.5, 255.0)}  # maps the stored 0..255 values onto themselves
    for name, image in (("NIfTI path", str(nifti_path)), ("nibabel image", volume)):
        got = reference_processor(text=IMAGE_BLOCK, images=image, return_tensors="pt", **identity)
        assert torch.equal(got["pixel_values"], expected["pixel_values"]), name
        other_slice = reference_processor(text=IMAGE_BLOCK, images=image, images_kwargs={"slice_index": 0})
        assert not np.array_equal(other_slice["pixel_values"], expected["pixel_values"].numpy()), name


def test_nifti_slice_selection_and_window(ct_png, tmp_path):
    volume = nifti_volume(ct_png)
    middle = load_image(volume)  # default: the middle slice, min-max
    assert np.asarray(middle).std() > 0
    assert np.asarray(load_image(volume, slice_index=0)).max() == 0
    windowed = np.asarray(load_image(volume, slice_index=1, window="bone"))
    assert windowed.shape == (128, 128, 3) and not np.array_equal(windowed, np.asarray(middle))


def test_sixteen_bit_grayscale_and_rgba_inputs(reference_processor):
    sixteen_bit = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, fully transparent except the left half: composited on white
    rgba[:, :32, 3] = 255
    for image in (Image.fromarray(sixteen_bit), sixteen_bit, Image.fromarray(rgba, "RGBA"), Image.new("L", (64, 64))):
        got = reference_processor(text=IMAGE_BLOCK, images=image, return_tensors="pt")
        assert got["image_grid_hw"].tolist() == [[27, 27]]  # 64 px → min side 378 = 27 patches
    composited = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    assert composited[0, 0].tolist() == [255, 0, 0] and composited[0, -1].tolist() == [255, 255, 255]


def test_image_placeholders_expand_to_the_patch_grid(reference_processor):
    images = [Image.new("RGB", (378, 378)), Image.new("RGB", (700, 420))]
    text = f"{IMAGE_BLOCK}{IMAGE_BLOCK}<|im_start|>Compare.<|im_end|>"
    inputs = reference_processor(text=text, images=images, return_tensors="pt")
    grids = inputs["image_grid_hw"].tolist()
    assert grids == [[27, 27], [30, 50]]
    ids = inputs["input_ids"][0]
    assert int((ids == reference_processor.image_token_id).sum()) == sum(h * w for h, w in grids)
    assert inputs["pixel_values"].shape == (sum(h * w for h, w in grids), 3 * 14 * 14)
    # each block is start, h*w placeholders, end
    starts = (ids == reference_processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")).nonzero().flatten()
    assert starts.tolist() == [0, 27 * 27 + 2]


def test_processor_save_load_round_trip(reference_processor, ct_png, tmp_path):
    reference_processor.save_pretrained(tmp_path)
    reloaded = UniMedVLProcessor.from_pretrained(tmp_path)
    assert reloaded.chat_template == reference_processor.chat_template
    assert reloaded.tokenizer.padding_side == "left"
    assert reloaded.image_processor.to_dict() == reference_processor.image_processor.to_dict()
    messages = [{"role": "user", "content": [{"type": "image", "image": ct_png}, {"type": "text", "text": "Organ?"}]}]
    for think in (False, True):
        kwargs = dict(add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", think=think)
        before = reference_processor.apply_chat_template(messages, **kwargs)
        after = reloaded.apply_chat_template(messages, **kwargs)
        assert before.keys() == after.keys()
        for key in before:
            assert torch.equal(before[key], after[key]), key
