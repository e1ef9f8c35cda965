# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Training rows (the sample schema of `unimedvl.train.schema`) built from [`ImageRecord`]s.

Three task families:
    - understanding: image + one closed question (fixed answer sets of `annotations.QUESTIONS`) or "Describe this
      image." -> short text answer;
    - generation: caption -> image;
    - interleaved: image + instruction -> image, for real paired transformations only: the same CT pixels under
      another display window, and 2x super-resolution (input = the image shrunk 2x and enlarged back).

Images are referenced by file name (`<image_id>.png`); the writer embeds their bytes. Every random choice (caption
template, instruction wording) uses a generator seeded with `(seed, image id, purpose)`, so a row does not depend
on which other sources were built.
"""

import random
from collections import defaultdict

from .annotations import CT_WINDOWS, QUESTIONS, choose_caption, closed_answers, describe
from .imaging import low_resolution_copy
from .records import ImageRecord


TASKS = ("understanding", "generation", "interleaved")
WINDOW_INSTRUCTIONS = (
    "Show this CT slice in a {window}.",
    "Render this CT image with a {window}.",
    "Change the display window of this CT slice to a {window}.",
)
SUPER_RESOLUTION_INSTRUCTIONS = (
    "Increase the resolution of this image.",
    "Upscale this image by a factor of 2.",
    "Make a sharper, higher-resolution version of this image.",
)
# Columns of every row besides `messages`, `images` and `output_images` (None where not applicable).
METADATA_COLUMNS = ("task", "question_type", "answer", "modality", "body_part", "plane", "window", "view", "image_id",
                    "group_id", "source", "license")


def image_name(image_id: str) -> str:
    """File name an image is stored under."""
    return f"{image_id}.png"


def _rng(seed: int, image_id: str, purpose: str) -> random.Random:
    return random.Random(f"{seed}:{image_id}:{purpose}")


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


_IMAGE = {"type": "image", "text": None}


def _row(record: ImageRecord, task: str, question_type: str, messages: list, images: list, output_images: list,
         answer: str | None = None) -> dict:
    facts = record.facts
    return {
        "messages": messages, "images": images, "output_images": output_images, "task": task,
        "question_type": question_type, "answer": answer, "modality": facts.modality, "body_part": facts.body_part,
        "plane": facts.plane, "window": facts.window, "view": facts.view, "image_id": record.image_id,
        "group_id": record.group_id, "source": record.source, "license": record.license,
    }


def understanding_rows(record: ImageRecord) -> list[dict]:
    """One row per closed question that applies to the image, plus "Describe this image."."""
    answers = {**closed_answers(record.facts), "describe": describe(record.facts)}
    rows = []
    for question_type, (question, _) in QUESTIONS.items():
        if question_type not in answers:
            continue
        messages = [{"role": "user", "content": [dict(_IMAGE), _text(question)]},
                    {"role": "assistant", "content": [_text(answers[question_type])]}]
        rows.append(_row(record, "understanding", question_type, messages, [image_name(record.image_id)], [],
                         answers[question_type]))
    return rows


def generation_row(record: ImageRecord, seed: int) -> dict:
    """Caption -> image, the caption drawn from the image's templated captions."""
    caption = choose_caption(record.facts, _rng(seed, record.image_id, "caption"))
    messages = [{"role": "user", "content": [_text(caption)]}, {"role": "assistant", "content": [dict(_IMAGE)]}]
    return _row(record, "generation", "caption", messages, [], [image_name(record.image_id)])


def window_change_rows(records, seed: int) -> list[dict]:
    """For every two images with the same `pair_key` (same CT pixels, two windows), one row per direction."""
    by_key = defaultdict(list)
    for record in records:
        if record.pair_key is not None:
            by_key[record.pair_key].append(record)
    rows = []
    for group in by_key.values():
        for source in group:
            for target in group:
                if target is source:
                    continue
                wording = _rng(seed, target.image_id, f"window-from-{source.facts.window}").choice(WINDOW_INSTRUCTIONS)
                instruction = wording.format(window=CT_WINDOWS[target.facts.window])
                messages = [{"role": "user", "content": [dict(_IMAGE), _text(instruction)]},
                            {"role": "assistant", "content": [dict(_IMAGE)]}]
                rows.append(_row(target, "interleaved", "window_change", messages, [image_name(source.image_id)],
                                 [image_name(target.image_id)]))
    return rows


def super_resolution_row(record: ImageRecord, seed: int):
    """(row, name, low-resolution input image): 2x super-resolution towards the stored image."""
    low_id = f"{record.image_id}_lowres2x"
    instruction = _rng(seed, record.image_id, "super-resolution").choice(SUPER_RESOLUTION_INSTRUCTIONS)
    messages = [{"role": "user", "content": [dict(_IMAGE), _text(instruction)]},
                {"role": "assistant", "content": [dict(_IMAGE)]}]
    row = _row(record, "interleaved", "super_resolution", messages, [image_name(low_id)],
               [image_name(record.image_id)])
    return row, image_name(low_id), low_resolution_copy(record.image)


def build_rows(records, seed: int) -> tuple[dict, dict]:
    """All rows of all records, by split, and every image they reference.

    Returns:
        `(rows, images)`: `rows[split]` is a list of rows, in a seeded random order; `images` maps file name -> PIL
        image (the records' images and the derived low-resolution inputs).
    """
    rows = defaultdict(list)
    images = {image_name(record.image_id): record.image for record in records}
    for record in records:
        rows[record.split].extend(understanding_rows(record))
        rows[record.split].append(generation_row(record, seed))
        row, name, low_resolution = super_resolution_row(record, seed)
        rows[record.split].append(row)
        images[name] = low_resolution
    for split in {record.split for record in records}:
        rows[split].extend(window_change_rows([r for r in records if r.split == split], seed))
    for split, split_rows in rows.items():
        random.Random(f"{seed}:{split}:order").shuffle(split_rows)
        for row in split_rows:
            validate_row(row, images)
    return dict(rows), images


def validate_row(row: dict, images=None) -> None:
    """Raise `ValueError` unless `row` follows the schema: turns alternate user/assistant (an optional system turn
    first) and end with the assistant; image items match `images` / `output_images` in number; the task matches the
    image layout; closed answers are in their fixed answer set; and, if `images` (name -> image) is given, every
    image reference resolves."""
    where = f"row {row.get('image_id')}/{row.get('question_type')}"
    roles = [turn["role"] for turn in row["messages"]]
    body = roles[1:] if roles and roles[0] == "system" else roles
    expected = ["user", "assistant"] * (len(body) // 2)
    if not body or body != expected:
        raise ValueError(f"{where}: roles {roles} do not alternate user/assistant ending with the assistant.")
    counts = {"input": 0, "output": 0}
    for turn in row["messages"]:
        for item in turn["content"]:
            if item["type"] == "image":
                counts["output" if turn["role"] == "assistant" else "input"] += 1
            elif item["type"] != "text" or not isinstance(item.get("text"), str) or not item["text"]:
                raise ValueError(f"{where}: bad content item {item!r}.")
    if counts["input"] != len(row["images"]) or counts["output"] != len(row["output_images"]):
        raise ValueError(f"{where}: {counts} image items for {len(row['images'])} input / "
                         f"{len(row['output_images'])} output images.")
    layout = "understanding" if not row["output_images"] else "interleaved" if row["images"] else "generation"
    if row["task"] != layout:
        raise ValueError(f"{where}: task {row['task']!r} but the image layout is that of {layout!r}.")
    allowed = QUESTIONS.get(row["question_type"], (None, None))[1]
    if allowed is not None and row["answer"] not in allowed:
        raise ValueError(f"{where}: answer {row['answer']!r} is not in {allowed}.")
    if images is not None:
        missing = [name for name in row["images"] + row["output_images"] if name not in images]
        if missing:
            raise ValueError(f"{where}: unresolved image reference(s) {missing}.")


__all__ = ["METADATA_COLUMNS", "SUPER_RESOLUTION_INSTRUCTIONS", "TASKS", "WINDOW_INSTRUCTIONS", "build_rows",
           "generation_row", "image_name", "super_resolution_row", "understanding_rows", "validate_row",
           "window_change_rows"]
