"""UniMedVL understanding through the public API, against the reference goldens of the original release.

Every model here is loaded from the ORIGINAL-layout fixture checkpoint (the converted copy is covered in
test_convert.py). Tolerances are the fixture README's: ids exact, logits and ViT features within 1e-4.
"""

import io

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    pipeline,
)

from unimedvl import (
    MedicalImageError,
    UniMedVLConfig,
    UniMedVLForConditionalGeneration,
    UniMedVLImageProcessor,
    UniMedVLModel,
    UniMedVLProcessor,
)
from unimedvl.commands.chat import stream_generate
from unimedvl.modeling.image_processing_unimedvl import GENERATION_VAE_RESIZE, GENERATION_VIT_RESIZE
from unimedvl.modeling.processing_unimedvl import UNDERSTANDING_THINK_PROMPT


ATOL = 1e-4


def chat_inputs(processor, prompt, images=(), **kwargs):
    """`apply_chat_template` inputs of one user turn: the images, then the prompt (the release's order)."""
    content = [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": prompt}]
    return processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        **kwargs,
    )


def case_inputs(case, processor, reference_inputs, reference_dir):
    """Inputs of a golden case, preprocessed the way the reference path did it."""
    spec = reference_inputs[case]
    if not spec.get("image"):
        return chat_inputs(processor, spec["prompt"])
    image = Image.open(reference_dir / "images" / spec["image"]).convert("RGB")
    if case != "vqa_interleave":
        return chat_inputs(processor, spec["prompt"], [image])
    # InterleaveInferencer: the VAE resize first, then the generation ViT rules (980/387/14).
    image = processor.image_processor.resize_image(image, *GENERATION_VAE_RESIZE)
    vit_max, vit_min, _, vit_pixels = GENERATION_VIT_RESIZE
    vit_kwargs = {"size": {"longest_edge": vit_max, "shortest_edge": vit_min}, "max_pixels": vit_pixels}
    return chat_inputs(processor, spec["prompt"], [image], processor_kwargs=vit_kwargs)


def greedy(model, inputs, max_new_tokens, **kwargs):
    """New token ids `(batch, new)` and step logits `(batch, new, vocab)` of greedy decoding."""
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            **kwargs,
        )
    return out.sequences[:, inputs["input_ids"].shape[1] :], torch.stack(out.logits, dim=1)


def connector_output(model, inputs):
    """What `model.model.connector` returns during a forward pass (before the sin-cos table is added)."""
    captured = []
    handle = model.model.connector.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return captured[0]


@pytest.mark.parametrize("case", ["vqa_chat", "vqa_interleave", "report"])
def test_generation_matches_reference(
    case, reference_model, reference_processor, reference_inputs, reference_goldens, reference_tensors, reference_dir
):
    want = reference_goldens[case]["generated_ids"][1:]  # the golden starts with the <|im_start|> fed first
    inputs = case_inputs(case, reference_processor, reference_inputs, reference_dir)
    ids, logits = greedy(reference_model, inputs, len(want))
    diff = (logits[0] - reference_tensors[f"{case}.step_logits"][: len(want)]).abs().max().item()
    print(f"{case}: step logits max abs diff {diff:.2e}")
    assert ids[0].tolist() == want
    assert diff <= ATOL


@pytest.mark.parametrize("case", ["vqa_chat", "vqa_interleave"])
def test_vit_connector_output_matches_reference(
    case, reference_model, reference_processor, reference_inputs, reference_tensors, reference_dir
):
    spec = reference_inputs[case]
    inputs = case_inputs(case, reference_processor, reference_inputs, reference_dir)
    width, height = spec["vit_input_size_wh"]
    assert inputs["image_grid_hw"].tolist() == [[height // 14, width // 14]]
    features = connector_output(reference_model, inputs)
    diff = (features - reference_tensors[f"{case}.vit_connector_out"]).abs().max().item()
    print(f"{case}: ViT connector output max abs diff {diff:.2e}")
    assert diff <= ATOL


def test_interleave_preprocessing_reproduces_reference_pixels(reference_processor, reference_inputs, reference_dir):
    """The double resize (VAE rules, then generation ViT rules) gives the exact image the reference fed its ViT."""
    image = Image.open(reference_dir / "images" / "ct_small.png").convert("RGB")
    image_processor = reference_processor.image_processor
    vae_input = image_processor.resize_image(image, *GENERATION_VAE_RESIZE)
    assert list(vae_input.size) == reference_inputs["vqa_interleave"]["vae_resize_size_wh"]
    vit_input = image_processor.resize_image(vae_input, *GENERATION_VIT_RESIZE)
    expected = Image.open(reference_dir / "preprocessed" / "vqa_interleave_vit_input.png").convert("RGB")
    assert vit_input.size == expected.size
    assert vit_input.tobytes() == expected.tobytes()


def test_batched_generation_equals_one_by_one(reference_model, reference_processor, reference_inputs, reference_dir):
    image = Image.open(reference_dir / "images" / "ct_small.png").convert("RGB")
    conversations = [
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Which organ?"}]}],
        [{"role": "user", "content": [{"type": "text", "text": reference_inputs["report"]["prompt"]}]}],
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Any fracture?"}]}],
    ]
    batch = reference_processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    )
    assert (batch["attention_mask"][:, 0] == 0).any(), "the batch should need left padding"
    batch_ids, batch_logits = greedy(reference_model, batch, 8)
    for index, conversation in enumerate(conversations):
        single = reference_processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        ids, logits = greedy(reference_model, single, 8)
        assert batch_ids[index, : ids.shape[1]].tolist() == ids[0].tolist()
        torch.testing.assert_close(batch_logits[index, : logits.shape[1]], logits[0], atol=ATOL, rtol=0)


def test_sampling_is_reproducible_with_a_seed(reference_model, reference_processor, reference_inputs, reference_dir):
    inputs = case_inputs("vqa_chat", reference_processor, reference_inputs, reference_dir)
    runs = []
    for _ in range(2):
        torch.manual_seed(1234)
        with torch.no_grad():
            runs.append(reference_model.generate(**inputs, max_new_tokens=10, do_sample=True, temperature=1.5))
    assert torch.equal(runs[0], runs[1])


def test_beam_search_batched_equals_one_by_one(reference_model, reference_processor, reference_inputs, reference_dir):
    """Beam search expands packed `pixel_values` per sample; a batch must give each sample's own beams."""
    cases = ("vqa_chat", "report")
    singles = [case_inputs(case, reference_processor, reference_inputs, reference_dir) for case in cases]
    image = Image.open(reference_dir / "images" / "ct_small.png").convert("RGB")
    conversations = [
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": spec["prompt"]}]}]
        if spec.get("image")
        else [{"role": "user", "content": [{"type": "text", "text": spec["prompt"]}]}]
        for spec in (reference_inputs[case] for case in cases)
    ]
    batch = reference_processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    )
    with torch.no_grad():
        batched = reference_model.generate(**batch, max_new_tokens=6, num_beams=3, do_sample=False)
        for index, single in enumerate(singles):
            alone = reference_model.generate(**single, max_new_tokens=6, num_beams=3, do_sample=False)
            new_tokens = alone[0, single["input_ids"].shape[1] :].tolist()
            assert batched[index, batch["input_ids"].shape[1] :][: len(new_tokens)].tolist() == new_tokens


def test_streaming_equals_non_streaming(reference_model, reference_processor, reference_inputs, reference_dir):
    inputs = case_inputs("vqa_chat", reference_processor, reference_inputs, reference_dir)
    ids, _ = greedy(reference_model, inputs, 16)
    out = io.StringIO()
    streamed = stream_generate(
        reference_model, reference_processor.tokenizer, inputs, {"max_new_tokens": 16, "do_sample": False}, out
    )
    assert streamed == out.getvalue() == reference_processor.decode(ids[0], skip_special_tokens=True)


def test_think_mode_prepends_the_release_system_block(reference_processor):
    tokenizer = reference_processor.tokenizer
    plain = chat_inputs(reference_processor, "Which organ is shown?")["input_ids"][0].tolist()
    think = chat_inputs(reference_processor, "Which organ is shown?", think=True)["input_ids"][0].tolist()
    block = tokenizer.convert_tokens_to_ids(["<|im_start|>"]) + tokenizer.encode(UNDERSTANDING_THINK_PROMPT)
    block += tokenizer.convert_tokens_to_ids(["<|im_end|>"])
    assert think == block + plain


def test_bfloat16_generation_runs_and_drift_is_small(
    reference_checkpoint, reference_processor, reference_inputs, reference_goldens, reference_tensors, reference_dir
):
    """bf16 weights and activations: generation runs; teacher-forced logits stay close to the fp32 goldens."""
    model = UniMedVLForConditionalGeneration.from_pretrained(reference_checkpoint, dtype=torch.bfloat16).eval()
    assert model.dtype == torch.bfloat16
    inputs = case_inputs("vqa_chat", reference_processor, reference_inputs, reference_dir)
    ids, _ = greedy(model, inputs, 16)
    assert ids.shape == (1, 16)

    # Teacher forcing on the golden answer, so that one flipped token does not derail the comparison.
    golden = torch.tensor([reference_goldens["vqa_chat"]["generated_ids"][1:]])
    prompt_length = inputs["input_ids"].shape[1]
    forced = dict(inputs)
    forced["input_ids"] = torch.cat([inputs["input_ids"], golden[:, :-1]], dim=1)
    forced["attention_mask"] = torch.ones_like(forced["input_ids"])
    with torch.no_grad():
        logits = model(**forced).logits[0, prompt_length - 1 :].float()
    reference = reference_tensors["vqa_chat.step_logits"][: golden.shape[1]]
    drift = (logits - reference).abs().max().item()
    scale = reference.abs().max().item()
    same = sum(a == b for a, b in zip(ids[0].tolist(), golden[0].tolist(), strict=True))
    print(
        f"bf16 vs fp32 goldens (vqa_chat, 16 teacher-forced steps): max abs logit diff {drift:.3g} "
        f"(max |logit| {scale:.3g}); greedy ids equal for {same}/16 steps"
    )
    assert torch.isfinite(logits).all()
    assert drift < 0.1 * scale


def test_device_map_auto_loads_and_generates(
    reference_checkpoint, reference_processor, reference_inputs, reference_goldens, reference_dir
):
    model = UniMedVLForConditionalGeneration.from_pretrained(
        reference_checkpoint, dtype=torch.float32, device_map="auto"
    ).eval()
    want = reference_goldens["vqa_chat"]["generated_ids"][1:]
    ids, _ = greedy(model, case_inputs("vqa_chat", reference_processor, reference_inputs, reference_dir), len(want))
    assert ids[0].tolist() == want


def test_save_pretrained_round_trip_is_exact(
    reference_model, reference_processor, reference_inputs, reference_dir, tmp_path
):
    reference_model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        assert set(handle.keys()) == set(reference_model.state_dict())  # our names, not the release's
    reloaded = UniMedVLForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32).eval()
    original_state, reloaded_state = reference_model.state_dict(), reloaded.state_dict()
    assert original_state.keys() == reloaded_state.keys()
    for key, tensor in original_state.items():
        assert torch.equal(tensor, reloaded_state[key]), key
    inputs = case_inputs("vqa_chat", reference_processor, reference_inputs, reference_dir)
    with torch.no_grad():
        assert torch.equal(reference_model(**inputs).logits, reloaded(**inputs).logits)


def test_auto_classes_resolve_to_ours(reference_model, reference_processor, tmp_path):
    reference_model.save_pretrained(tmp_path)
    reference_processor.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is UniMedVLConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is UniMedVLModel
    assert type(AutoModelForImageTextToText.from_pretrained(tmp_path)) is UniMedVLForConditionalGeneration
    assert type(AutoProcessor.from_pretrained(tmp_path)) is UniMedVLProcessor
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is UniMedVLImageProcessor


def test_image_text_to_text_pipeline(reference_model, reference_processor, reference_dir):
    image = Image.open(reference_dir / "images" / "ct_small.png").convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Organ?"}]}]
    pipe = pipeline("image-text-to-text", model=reference_model, processor=reference_processor)
    answer = pipe(text=messages, max_new_tokens=6)[0]["generated_text"][-1]
    ids, _ = greedy(reference_model, chat_inputs(reference_processor, "Organ?", [image]), 6)
    assert answer["role"] == "assistant"
    assert answer["content"] == reference_processor.decode(ids[0], skip_special_tokens=True)


# -- bad inputs ------------------------------------------------------------------------------------------------------


def test_placeholder_and_image_counts_must_agree(reference_model, reference_processor, reference_dir):
    image = Image.open(reference_dir / "images" / "ct_small.png").convert("RGB")
    block = "<|vision_start|><|image_pad|><|vision_end|>"
    with pytest.raises(ValueError, match="should be the same as the number of images"):
        reference_processor(text=block * 2 + "<|im_start|>Compare.<|im_end|>", images=[image])
    with pytest.raises(ValueError, match="should be the same as the number of images"):
        reference_processor(text=block + "<|im_start|>Compare.<|im_end|>", images=[image, image])
    inputs = chat_inputs(reference_processor, "Which organ?", [image])
    with pytest.raises(ValueError, match="placeholder tokens but `pixel_values` provides 0"):
        reference_model(input_ids=inputs["input_ids"])


def test_corrupt_image_is_named(reference_processor, tmp_path):
    corrupt = tmp_path / "scan.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    with pytest.raises(MedicalImageError, match="scan.png"):
        chat_inputs(reference_processor, "Which organ?", [str(corrupt)])


@pytest.mark.parametrize(
    "files, expected",
    [
        (("notes.txt", "weights.bin"), "notes.txt, weights.bin"),
        (("llm_config.json", "vit_config.json"), "missing here: ema.safetensors"),
    ],
)
def test_folder_of_neither_layout_lists_what_it_holds(files, expected, tmp_path):
    for name in files:
        (tmp_path / name).write_text("{}")
    for loader in (UniMedVLForConditionalGeneration, UniMedVLProcessor):
        with pytest.raises(OSError, match="not a UniMedVL checkpoint folder") as error:
            loader.from_pretrained(tmp_path)
        message = str(error.value)
        assert str(tmp_path) in message and expected in message and "llm_config.json" in message


def test_prompt_longer_than_the_context_is_refused(reference_model):
    limit = reference_model.config.text_config.max_position_embeddings
    input_ids = torch.full((1, limit + 1), 100)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        reference_model(input_ids=input_ids)
