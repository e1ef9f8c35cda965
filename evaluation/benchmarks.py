# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Dataset adapters: how the rows of each benchmark's Hub format map to the fields a runner needs.

A [`Benchmark`] names, for every *role* a runner reads (`question`, `answer`, `image`, ...), the dataset columns that
may hold it, most specific first; the first column present in the dataset wins, and a column given on the command
line (`--question-column`, ...) replaces the candidates. Columns of per-letter options are templates with `{letter}`
(`"Choice {letter}"` reads `Choice A`, `Choice B`, ... up to the first missing or empty one).

Each evaluation family (`vqa`, `report`, `t2i`, `i2i`) has a generic adapter named after it; the public VQA
benchmarks have their own. See `evaluation/README.md` for the columns each expects.
"""

import re
from dataclasses import dataclass, field


FAMILIES = ("vqa", "report", "t2i", "i2i")
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Every family reads an `id` (a stable example id) and a `modality` (per-modality tables) when the dataset has them.
_ID_COLUMNS = ("id", "qid", "question_id", "uid", "study_id")
_MODALITY_COLUMNS = ("modality", "modality_type", "Modality")


class UnknownBenchmarkError(ValueError):
    """A benchmark name that no adapter of the evaluation family answers to."""


class MissingColumnError(ValueError):
    """The dataset has no column for a role the runner needs."""


@dataclass(frozen=True)
class Benchmark:
    """How one benchmark's rows map to runner fields.

    Attributes:
        name: registry key, e.g. `"slake"` (what `--benchmark` takes).
        family: `"vqa"`, `"report"`, `"t2i"` or `"i2i"`.
        title: display name in results and reports, e.g. `"SLAKE"`.
        columns: role -> candidate column names, most specific first.
        required: roles without which no example can be built.
        hub_ids: the Hub datasets this adapter was written for (documentation; `--benchmark auto` also matches them).
        aliases: spellings that `--benchmark auto` recognises inside a dataset id or path.
    """

    name: str
    family: str
    title: str
    columns: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    hub_ids: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=())

    def resolve_columns(self, available, overrides: dict | None = None) -> dict[str, str | None]:
        """Role -> the dataset column that holds it (or `None`), given the dataset's column names.

        Raises:
            MissingColumnError: a required role has no column, or an overriding column is not in the dataset.
        """
        available = list(available)
        overrides = {role: column for role, column in (overrides or {}).items() if column}
        unknown_roles = set(overrides) - set(self.columns)
        if unknown_roles:
            raise ValueError(f"The {self.title} adapter has no role(s) {sorted(unknown_roles)}.")
        resolved = {}
        for role, candidates in self.columns.items():
            if role in overrides:
                if not _column_present(overrides[role], available):
                    raise MissingColumnError(
                        f"--{role.replace('_', '-')}-column {overrides[role]!r} is not a column of the dataset; its "
                        f"columns are {available}."
                    )
                resolved[role] = overrides[role]
                continue
            resolved[role] = next((column for column in candidates if _column_present(column, available)), None)
            if resolved[role] is None and role in self.required:
                raise MissingColumnError(
                    f"The {self.title} adapter needs a {role} column ({' or '.join(map(repr, candidates))}) but the "
                    f"dataset's columns are {available}; pass --{role.replace('_', '-')}-column."
                )
        return resolved


def _column_present(column: str, available) -> bool:
    if "{letter}" in column:
        return column.format(letter=OPTION_LETTERS[0]) in available
    return column in available


def read_options(row: dict, column: str | None) -> list[str] | None:
    """The options of a multiple-choice row, in letter order, from a list column or per-letter columns.

    A leading copy of the option's own letter ("A:Heart", "B. Lung", "(C) Liver") is removed, as PMC-VQA writes its
    choices that way. Returns `None` when the row has no option.
    """
    if column is None:
        return None
    if "{letter}" in column:
        values = []
        for letter in OPTION_LETTERS:
            value = row.get(column.format(letter=letter))
            if value is None or not str(value).strip():
                break
            values.append(value)
    else:
        values = row.get(column) or []
    options = [_strip_own_letter(str(value), letter) for value, letter in zip(values, OPTION_LETTERS)]
    return options or None


def _strip_own_letter(option: str, letter: str) -> str:
    return re.sub(rf"^\s*\(?{letter}\s*[:.)]\s*", "", option, count=1, flags=re.IGNORECASE).strip()


def _vqa_columns(**specific) -> dict[str, tuple[str, ...]]:
    generic = {
        "id": _ID_COLUMNS,
        "image": ("image", "images", "img_name", "image_path", "Figure_path", "img"),
        "question": ("question", "Question", "query"),
        "answer": ("answer", "Answer", "gt_answer", "label"),
        "answer_type": ("answer_type",),
        "options": ("options", "choices", "option_{letter}", "Choice {letter}"),
        "modality": _MODALITY_COLUMNS,
        "language": ("q_lang", "language"),
    }
    return generic | specific


VQA_REQUIRED = ("image", "question", "answer")

BENCHMARKS = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark("vqa", "vqa", "VQA", _vqa_columns(), VQA_REQUIRED),
        Benchmark(
            "slake", "vqa", "SLAKE",
            _vqa_columns(id=("qid",), image=("image", "img_name"), modality=("modality",), language=("q_lang",)),
            VQA_REQUIRED, hub_ids=("BoKelvin/SLAKE",), aliases=("slake",),
        ),
        Benchmark(
            "vqa-rad", "vqa", "VQA-RAD", _vqa_columns(image=("image", "image_name")), VQA_REQUIRED,
            hub_ids=("flaviagiammarino/vqa-rad",), aliases=("vqarad", "vqa_rad", "vqa-rad"),
        ),
        Benchmark(
            "pathvqa", "vqa", "PathVQA", _vqa_columns(), VQA_REQUIRED,
            hub_ids=("flaviagiammarino/path-vqa",), aliases=("pathvqa", "path-vqa", "path_vqa"),
        ),
        Benchmark(
            "pmc-vqa", "vqa", "PMC-VQA",
            _vqa_columns(
                image=("image", "Figure_path"), question=("Question", "question"),
                answer=("Answer_label", "Answer", "answer"), options=("Choice {letter}", "options"),
            ),
            VQA_REQUIRED, hub_ids=("xmcmic/PMC-VQA",), aliases=("pmcvqa", "pmc-vqa", "pmc_vqa"),
        ),
        Benchmark(
            "omnimedvqa", "vqa", "OmniMedVQA",
            _vqa_columns(
                id=("question_id",), image=("image", "image_path"), answer=("gt_answer", "answer"),
                options=("option_{letter}", "options"), modality=("modality_type", "modality"),
            ),
            VQA_REQUIRED, hub_ids=("foreverbeliever/OmniMedVQA",), aliases=("omnimedvqa",),
        ),
        Benchmark(
            "report", "report", "Report generation",
            {
                "id": _ID_COLUMNS,
                "image": ("image", "images", "image_path", "path"),
                "report": ("findings", "report", "text", "caption"),
                "prompt": ("prompt",),
                "modality": _MODALITY_COLUMNS,
            },
            ("image", "report"),
        ),
        Benchmark(
            "t2i", "t2i", "Text-to-image",
            {
                "id": _ID_COLUMNS,
                "prompt": ("prompt", "caption", "text", "report"),
                "image": ("image", "image_path", "path", "file_name"),
                "modality": _MODALITY_COLUMNS,
            },
            ("prompt", "image"),
        ),
        Benchmark(
            "i2i", "i2i", "Image-to-image",
            {
                "id": _ID_COLUMNS,
                "image": ("input_image", "source_image", "source", "condition_image", "lr_image", "image"),
                "target": ("target_image", "target", "output_image", "hr_image", "edited_image"),
                "instruction": ("instruction", "prompt", "task", "edit_prompt"),
                "modality": _MODALITY_COLUMNS,
            },
            ("image", "target"),
        ),
    )
}  # fmt: skip


def get_benchmark(name: str, family: str, dataset: str = "") -> Benchmark:
    """The adapter `name` of `family`; `"auto"` picks the benchmark whose Hub id or alias appears in `dataset`, else
    the family's generic adapter.

    Raises:
        UnknownBenchmarkError: `name` is not an adapter of `family`; the message lists those that are.
    """
    known = [key for key, benchmark in BENCHMARKS.items() if benchmark.family == family]
    if name == "auto":
        return guess_benchmark(dataset, family)
    if name not in known:
        raise UnknownBenchmarkError(
            f"Unknown {family} benchmark {name!r}; known {family} benchmarks: {', '.join(known)} (or auto)."
        )
    return BENCHMARKS[name]


def guess_benchmark(dataset: str, family: str) -> Benchmark:
    """The adapter of `family` whose Hub id or alias occurs in `dataset` (case-insensitive; the occurrence nearest
    the end wins, so `runs/slake/vqa-rad` is VQA-RAD), else the family's generic adapter."""
    text = str(dataset).lower()
    best, best_position = BENCHMARKS[family], -1
    for benchmark in BENCHMARKS.values():
        if benchmark.family != family:
            continue
        spellings = [hub_id.lower() for hub_id in benchmark.hub_ids] + list(benchmark.aliases)
        position = max(text.rfind(spelling) for spelling in spellings) if spellings else -1
        if position > best_position:
            best, best_position = benchmark, position
    return best


__all__ = [
    "BENCHMARKS",
    "FAMILIES",
    "Benchmark",
    "MissingColumnError",
    "UnknownBenchmarkError",
    "get_benchmark",
    "guess_benchmark",
    "read_options",
]
