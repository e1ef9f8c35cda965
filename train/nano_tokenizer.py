# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Train the small Qwen2-style tokenizer of UniMedVL-Nano.

```
python -m unimedvl.train.nano_tokenizer DATASET_DIR OUTPUT_DIR [--vocab-size 1024] [--splits train]
```

The release uses Qwen2.5's byte-level BPE (151k entries); UniMedVL-Nano needs a vocabulary a tiny model can afford.
This module trains the same kind of tokenizer, with the `tokenizers` library, on every text of the nano data set
(questions, answers, descriptions, captions, instructions) plus [`GENERIC_WORDS`], a short list of common English and
medical words so that text outside the data set still gets whole-word tokens:

- **Pipeline** (exactly `transformers`' `Qwen2Tokenizer`): NFC normalisation, Qwen2's pre-tokenisation regex
  (isolated splits: contractions, letter runs with one leading non-letter, single digits, punctuation runs,
  whitespace), byte-level mapping without a prefix space, byte-level decoding. All 256 byte symbols are in the
  vocabulary, so any text encodes and decodes back exactly.
- **Vocabulary**: `vocab_size` entries (256 byte symbols + learned merges; fewer if the corpus runs out of pairs to
  merge), then Qwen2.5's 22 added tokens in Qwen's order and with Qwen's flags (`<tool_call>` / `</tool_call>` are
  not special).
- **Saved** with `save_pretrained` as a `Qwen2Tokenizer` (eos `<|im_end|>`, pad `<|endoftext|>`, no bos / unk,
  `padding_side="left"`), so `AutoTokenizer.from_pretrained(OUTPUT_DIR)` and `UniMedVLProcessor` take it as they take
  the release's tokenizer.

Training is deterministic: the same texts and `vocab_size` give byte-identical files.
"""

import argparse
import json

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from .nano_data import load_nano_dataset


# Qwen2.5's added tokens, in Qwen's id order: (content, special).
QWEN2_ADDED_TOKENS = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
)
# Qwen2.5's `additional_special_tokens` (the chat and vision markers).
ADDITIONAL_SPECIAL_TOKENS = tuple(token for token, _ in QWEN2_ADDED_TOKENS[1:14])
# What the text of a (task, role) is.
TEXT_KINDS = {
    ("understanding", "user"): "question",
    ("understanding", "assistant"): "answer",
    ("generation", "user"): "caption",
    ("generation", "assistant"): "answer",
    ("interleaved", "user"): "instruction",
    ("interleaved", "assistant"): "answer",
}
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 131072

# Common English and medical words, added once each (as one sentence) to the training texts so that questions and
# answers outside the data set still tokenise into whole words or large pieces.
GENERIC_WORDS = """
the a an of in on at to for from with without and or not no yes is are was were be been this that these those
it its there here what which who where when why how does do did can could should would may might will show shows
shown seen see visible present absent image images scan scans slice slices view views picture photo photograph
patient patients left right upper lower anterior posterior superior inferior medial lateral central bilateral
normal abnormal finding findings lesion lesions mass masses nodule nodules tumor tumour cancer cyst fluid effusion
fracture bleeding hemorrhage haemorrhage infarct stroke edema oedema inflammation infection pneumonia atelectasis
calcification enlargement dilation stenosis obstruction metastasis benign malignant acute chronic mild moderate
severe small large size shape density intensity signal contrast enhanced enhancement bright dark hyperintense
hypointense hyperdense hypodense opacity consolidation air gas fat bone soft tissue muscle vessel vessels artery
vein blood brain skull head neck spine spinal cord chest thorax lung lungs heart cardiac aorta liver kidney kidneys
spleen pancreas stomach bowel colon intestine bladder prostate uterus ovary breast thyroid abdomen pelvis hip knee
shoulder elbow wrist hand foot ankle leg arm extremity eye retina optic nerve joint rib ribs vertebra disc
modality radiology radiograph radiography X-ray CT MRI PET ultrasound sonography mammography angiography
endoscopy dermatology pathology histology histopathology microscopy fundus ophthalmology nuclear medicine
tomography computed magnetic resonance imaging weighted T1 T2 FLAIR diffusion perfusion sequence window level
axial coronal sagittal oblique plane cross section frontal projection cell cells nucleus stain
stained staining sample biopsy diagnosis diagnostic clinical medical doctor hospital report impression
describe description explain answer question generate create make produce convert change increase decrease
improve resolution quality noise sharper higher color colour grayscale gray grey black white red green blue
one two three four five first second third single multiple both each all some any more less most many much
very about between within around into over under after before during while because if then than also only
""".split()


def build_bpe_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE with `transformers`' `Qwen2Tokenizer` pipeline (NFC, Qwen2 regex, byte level)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def message_texts(row: dict) -> list[str]:
    """The text items of a row's messages, in order."""
    return [item["text"] for message in row["messages"] for item in message["content"] if item["type"] == "text"]


def dataset_texts(dataset_dir, splits=("train",)) -> list[str]:
    """Every text of the given splits of a built nano data set (with repetitions: frequency guides the merges)."""
    texts = []
    for split in splits:
        rows = load_nano_dataset(dataset_dir, split).select_columns(["messages"])
        texts += [text for row in rows for text in message_texts(row)]
    return texts


def train_bpe(texts, vocab_size: int) -> Tokenizer:
    """Trains the byte-level BPE on `texts` and appends Qwen2.5's added tokens after the learned vocabulary.

    Args:
        texts (`list[str]`): training texts.
        vocab_size (`int`): entries before the added tokens (256 byte symbols + merges); at least 257.
    """
    if vocab_size <= 256:
        raise ValueError(f"`vocab_size` must exceed the 256 byte symbols, got {vocab_size}")
    tokenizer = build_bpe_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    for content, special in QWEN2_ADDED_TOKENS:  # one at a time: the ids follow this order
        tokenizer.add_tokens([AddedToken(content, special=special, normalized=False)])
    return tokenizer


def wrap_qwen2(tokenizer: Tokenizer) -> Qwen2Tokenizer:
    """The trained backend as a `transformers` `Qwen2Tokenizer` with the release's special-token settings."""
    return Qwen2Tokenizer(
        tokenizer_object=tokenizer,
        bos_token=None,
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(ADDITIONAL_SPECIAL_TOKENS),
        add_prefix_space=False,
        padding_side="left",
        errors="replace",
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )


def round_trip_failures(tokenizer, texts) -> list[str]:
    """The distinct texts that do not come back exactly from encode -> decode."""
    return [text for text in sorted(set(texts))
            if tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) != text]


def mean_tokens_by_kind(tokenizer, dataset_dir, splits=("train", "test")) -> dict:
    """Mean tokens per text over all rows of `splits`, by kind of text ([`TEXT_KINDS`]: questions, answers,
    captions, instructions)."""
    counts = {}
    for split in splits:
        for row in load_nano_dataset(dataset_dir, split).select_columns(["messages", "task"]):
            for message in row["messages"]:
                kind = TEXT_KINDS[row["task"], message["role"]]
                counts.setdefault(kind, []).extend(
                    len(tokenizer.encode(item["text"], add_special_tokens=False))
                    for item in message["content"] if item["type"] == "text")
    return {f"mean_tokens_per_{kind}": sum(values) / len(values) for kind, values in sorted(counts.items()) if values}


def train_tokenizer(texts, output_dir, vocab_size: int = 1024) -> Qwen2Tokenizer:
    """Trains on `texts` + [`GENERIC_WORDS`] and saves a `Qwen2Tokenizer` into `output_dir`.

    Returns:
        The `Qwen2Tokenizer` as reloaded from `output_dir`.
    """
    tokenizer = wrap_qwen2(train_bpe([*texts, " ".join(GENERIC_WORDS)], vocab_size))
    tokenizer.save_pretrained(output_dir)
    return Qwen2Tokenizer.from_pretrained(output_dir)


def train_nano_tokenizer(dataset_dir, output_dir, vocab_size: int = 1024, splits=("train",)) -> dict:
    """Trains the nano tokenizer on every text of `splits` of a built nano data set (+ [`GENERIC_WORDS`]), saves it
    into `output_dir` and checks it on those texts.

    Args:
        dataset_dir: a folder written by `python -m unimedvl.train.build_nano_dataset`.
        output_dir: where the tokenizer files are written.
        vocab_size: entries before the 22 added tokens (256 byte symbols + learned merges).
        splits: the splits whose texts are used; the held-out split by default stays out of every trained artifact,
            the tokenizer included.

    Returns:
        `dict`: vocabulary sizes, the texts that fail to round-trip (none expected) and mean tokens per kind of text.
    """
    texts = dataset_texts(dataset_dir, splits)
    tokenizer = train_tokenizer(texts, output_dir, vocab_size)
    return {
        "learned_vocab_size": len(tokenizer) - len(QWEN2_ADDED_TOKENS),
        "total_vocab_size": len(tokenizer),
        "texts": len(texts),
        "distinct_texts": len(set(texts)),
        "round_trip_failures": round_trip_failures(tokenizer, texts),
        **mean_tokens_by_kind(tokenizer, dataset_dir, splits),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset_dir", help="a built nano data set (python -m unimedvl.train.build_nano_dataset)")
    parser.add_argument("output_dir", help="folder to save the tokenizer into")
    parser.add_argument("--vocab-size", type=int, default=1024,
                        help="entries before the 22 added tokens (256 byte symbols + learned merges)")
    parser.add_argument("--splits", default="train", help="comma-separated splits whose texts are used (default: train)")
    args = parser.parse_args(argv)
    metrics = train_nano_tokenizer(args.dataset_dir, args.output_dir, args.vocab_size, tuple(args.splits.split(",")))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
