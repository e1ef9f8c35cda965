"""The fast paths of understanding decoding give the same answers as the plain ones: text-only tokens never touch the
generation expert, a static (and a compiled) key/value cache decodes like the dynamic one, and a left-padded batch of
real example images answers like one item at a time. All on the embedded UniMedVL-Nano model."""

import pathlib

import pytest
import torch
from transformers import CompileConfig

from unimedvl import UniMedVLForConditionalGeneration, UniMedVLProcessor
from unimedvl.hub import NANO_MODEL_PATH


EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "spaces" / "examples"
QUESTION = "Which imaging modality is this?"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The nano model is too small to gain from threads; one keeps it fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nano():
    return UniMedVLForConditionalGeneration.from_pretrained(NANO_MODEL_PATH).eval()


@pytest.fixture(scope="module")
def processor():
    return UniMedVLProcessor.from_pretrained(NANO_MODEL_PATH)


def conversation(image: str | None, question: str = QUESTION) -> list[dict]:
    images = [{"type": "image", "image": str(EXAMPLES / image)}] if image else []
    return [{"role": "user", "content": images + [{"type": "text", "text": question}]}]


def chat_inputs(processor, conversations):
    return processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    )


def greedy(model, inputs, **kwargs):
    """New token ids `(batch, new)` and step logits `(batch, new, vocab)`; exactly 8 tokens."""
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False, output_logits=True,
            return_dict_in_generate=True, **kwargs,
        )  # fmt: skip
    return out.sequences[:, inputs["input_ids"].shape[1] :], torch.stack(out.logits, dim=1)


def test_understanding_tokens_never_run_the_generation_expert(nano, processor):
    calls = []
    hooks = [
        module.register_forward_hook(lambda *_, name=name: calls.append(name))
        for name, module in nano.named_modules()
        if name.endswith("_moe_gen")
    ]
    try:
        greedy(nano, chat_inputs(processor, [conversation("CT_small.dcm")]))
    finally:
        for hook in hooks:
            hook.remove()
    # Per layer: 2 layer norms, q/k/v/o, q/k norms and the MLP; then the final norm.
    assert len(hooks) == 9 * nano.config.text_config.num_hidden_layers + 1
    assert calls == []


def test_understanding_only_routing_equals_the_routed_path(nano):
    """Without generation tokens every module runs once on the whole sequence; with one (last, so it cannot change the
    causal attention of the others) the understanding tokens are gathered, run, and scattered back. Same values."""
    torch.manual_seed(0)
    text_model = nano.model.language_model
    embeds = torch.randn(2, 9, nano.config.text_config.hidden_size)
    gen_token_mask = torch.zeros(2, 9, dtype=torch.bool)
    gen_token_mask[:, -1] = True
    with torch.no_grad():
        routed = text_model(inputs_embeds=embeds, gen_token_mask=gen_token_mask).last_hidden_state
        understanding_only = text_model(inputs_embeds=embeds[:, :-1]).last_hidden_state
    torch.testing.assert_close(understanding_only, routed[:, :-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("images", [(None,), ("MR_small.dcm", None, "fundus.jpg")])
def test_static_cache_decodes_like_the_dynamic_cache(nano, processor, images):
    """The static cache's prefill keeps the bidirectional image blocks; its decoding steps use `generate`'s ready-made
    masks, left padding included."""
    inputs = chat_inputs(processor, [conversation(image) for image in images])
    dynamic_ids, dynamic_logits = greedy(nano, inputs)
    static_ids, static_logits = greedy(nano, inputs, cache_implementation="static", disable_compile=True)
    assert static_ids.tolist() == dynamic_ids.tolist()
    torch.testing.assert_close(static_logits, dynamic_logits, atol=1e-4, rtol=0)


def test_decoding_step_compiles_to_one_graph(nano, processor):
    """A decoding step must never read device values on the host (a GPU stall per token): `fullgraph=True` fails on
    any graph break. The `eager` backend only traces, which keeps the test fast."""
    torch._dynamo.reset()
    compile_config = CompileConfig(fullgraph=True, backend="eager", mode=None)
    compile_config._compile_all_devices = True  # transformers only compiles on GPUs otherwise
    inputs = chat_inputs(processor, [conversation("CT_small.dcm")])
    want_ids, want_logits = greedy(nano, inputs)
    ids, logits = greedy(nano, inputs, cache_implementation="static", compile_config=compile_config)
    assert ids.tolist() == want_ids.tolist()
    torch.testing.assert_close(logits, want_logits, atol=1e-4, rtol=0)


def test_batched_vqa_with_left_padding_answers_like_one_at_a_time(nano, processor):
    """Real example files of every kind (DICOM, NIfTI, JPEG), different image grids and prompt lengths."""
    conversations = [
        conversation("CT_small.dcm"),
        conversation("head_phantom.nii.gz", "Is there a hyperdense focus in this head scan?"),
        conversation("ihc_colon.jpg", "What stain is this?"),
        conversation(None, "What does MRI stand for?"),
        conversation("MR_small.dcm"),
    ]
    batch = chat_inputs(processor, conversations)
    assert (batch["attention_mask"][:, 0] == 0).any(), "the batch should need left padding"
    batch_ids, batch_logits = greedy(nano, batch)
    for index, single in enumerate(conversations):
        ids, logits = greedy(nano, chat_inputs(processor, [single]))
        assert batch_ids[index].tolist() == ids[0].tolist()
        torch.testing.assert_close(batch_logits[index], logits[0], atol=1e-4, rtol=0)
