# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Human-readable reports of a run: `report.md` (images linked from the output folder) and a self-contained
`report.html` (images embedded as thumbnails), built from `results.json` alone.

Both show the overall metrics, a per-modality table, example predictions (for generation tasks the generated image
next to the real or target image), what could not be computed, the protocol, and the `model-index` block to paste
into a model card.
"""

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path


THUMBNAIL_SIZE = 192
TEXT_CELL_LIMIT = 300
TASK_TITLES = {
    "vqa": "Medical visual question answering",
    "report": "Report generation",
    "t2i": "Text-to-image generation",
    "i2i": "Image-to-image generation",
}


def _percent(value):
    return f"{100 * value:.2f}"


def _fixed(digits):
    return lambda value: f"{value:.{digits}f}"


# Per family: (key, column title, formatter) of the metrics shown, in order.
METRIC_COLUMNS = {
    "vqa": [
        ("num_questions", "Questions", str),
        ("accuracy", "Accuracy (%)", _percent),
        ("closed_accuracy", "Closed acc. (%)", _percent),
        ("open_recall", "Open recall (%)", _percent),
        ("open_f1", "Open F1 (%)", _percent),
        ("exact_match", "Exact match (%)", _percent),
    ],
    "report": [
        *[(f"bleu_{n}", f"BLEU-{n}", _fixed(4)) for n in range(1, 5)],
        ("rouge_l", "ROUGE-L", _fixed(4)),
        ("meteor", "METEOR", _fixed(4)),
        ("cider", "CIDEr", _fixed(4)),
        ("sacrebleu", "sacreBLEU", _fixed(4)),
    ],
    "t2i": [
        ("num_images", "Images", str),
        ("fid_modality_mean", "gFID (mean over modalities)", _fixed(2)),
        ("fid", "FID", _fixed(2)),
        ("clip_score", "BiomedCLIP score", _fixed(4)),
    ],
    "i2i": [("num_images", "Images", str), ("psnr", "PSNR (dB)", _fixed(2)), ("ssim", "SSIM", _fixed(4))],
}


@dataclass(frozen=True)
class ImageCell:
    """A table cell showing an image of the output folder."""

    path: str
    alt: str


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list]


def write_report(results: dict, output_dir: str | Path, html: bool = False) -> list[Path]:
    """Write `report.md` (and `report.html` when `html`) for `results` into `output_dir`; returns the paths."""
    output_dir = Path(output_dir)
    tables = report_tables(results)
    paths = [output_dir / "report.md"]
    paths[0].write_text(render_markdown(results, tables))
    if html:
        paths.append(output_dir / "report.html")
        paths[1].write_text(render_html(results, tables, output_dir))
    return paths


def report_tables(results: dict) -> list[Table]:
    """The metric, per-modality and example tables of a run."""
    columns = [column for column in METRIC_COLUMNS[results["task"]] if results["metrics"].get(column[0]) is not None]
    tables = [Table("Metrics", [title for _, title, _ in columns], [_metric_cells(results["metrics"], columns)])]
    if results["per_modality"]:
        columns = [
            column for column in METRIC_COLUMNS[results["task"]]
            if any(values.get(column[0]) is not None for values in results["per_modality"].values())
        ]  # fmt: skip
        rows = [[name, *_metric_cells(values, columns)] for name, values in results["per_modality"].items()]
        tables.append(Table("Per modality", ["Modality", *[title for _, title, _ in columns]], rows))
    if results["examples"]:
        tables.append(_without_empty_modality(EXAMPLE_TABLES[results["task"]](results["examples"])))
    return tables


def _without_empty_modality(table: Table) -> Table:
    """Drop the first column (modality) of an example table when no example has one."""
    if any(row[0] for row in table.rows):
        return table
    return Table(table.title, table.headers[1:], [row[1:] for row in table.rows])


def _metric_cells(values: dict, columns) -> list[str]:
    return ["–" if values.get(key) is None else formatter(values[key]) for key, _, formatter in columns]


def _vqa_examples(examples) -> Table:
    rows = [
        [example["modality"] or "", _question_with_options(example), example["reference"], example["prediction"],
         f"{example['answer_type']}: {example['score']:.2f}"]
        for example in examples
    ]  # fmt: skip
    return Table("Examples", ["Modality", "Question", "Reference", "Prediction", "Score"], rows)


def _question_with_options(example) -> str:
    options = example.get("options") or []
    return example["question"] + "".join(f" ({chr(65 + index)}) {option}" for index, option in enumerate(options))


def _report_examples(examples) -> Table:
    rows = [
        [example["modality"] or "", _as_text(example["reference"]), example["prediction"]] for example in examples
    ]
    return Table("Examples", ["Modality", "Reference", "Generated report"], rows)


def _as_text(reference) -> str:
    return reference if isinstance(reference, str) else " / ".join(reference)


def _t2i_examples(examples) -> Table:
    rows = [
        [example["modality"] or "", example["prompt"], ImageCell(example["generated"], "generated"),
         ImageCell(example["real"], "real")]
        for example in examples
    ]  # fmt: skip
    return Table("Examples: generated and real images", ["Modality", "Prompt", "Generated", "Real"], rows)


def _i2i_examples(examples) -> Table:
    rows = [
        [example["modality"] or "", example["instruction"], ImageCell(example["input"], "input"),
         ImageCell(example["generated"], "generated"), ImageCell(example["target"], "target"),
         f"{example['psnr']:.2f}", f"{example['ssim']:.4f}"]
        for example in examples
    ]  # fmt: skip
    headers = ["Modality", "Instruction", "Input", "Generated", "Target", "PSNR (dB)", "SSIM"]
    return Table("Examples: input, generated and target images", headers, rows)


EXAMPLE_TABLES = {"vqa": _vqa_examples, "report": _report_examples, "t2i": _t2i_examples, "i2i": _i2i_examples}


def model_index_yaml(results: dict) -> str:
    """The `model-index` block of a model card's YAML front matter for this run."""
    lines = ["model-index:", f"- name: {json.dumps(results['model'])}", "  results:"]
    for entry in results["model_index"]:
        lines += ["  - task:", *[f"      {key}: {json.dumps(value)}" for key, value in entry["task"].items()]]
        lines += ["    dataset:", *[f"      {key}: {json.dumps(value)}" for key, value in entry["dataset"].items()]]
        lines.append("    metrics:")
        for metric in entry["metrics"]:
            lines += [f"    - type: {json.dumps(metric['type'])}", f"      value: {metric['value']}",
                      f"      name: {json.dumps(metric['name'])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _title(results: dict) -> str:
    return f"{TASK_TITLES[results['task']]}: {results['benchmark']}"


def _summary(results: dict, code=lambda text: f"`{text}`") -> str:
    """One sentence naming the model, dataset and split; `code` formats the names (Markdown by default)."""
    config = f", config {code(results['config'])}" if results["config"] else ""
    return (
        f"Model {code(results['model'])} on {code(results['dataset'])}{config}, split {code(results['split'])}: "
        f"{results['num_examples']} examples."
    )


def _details(results: dict) -> list[tuple[str, list[str]]]:
    """(section title, bullet lines) of the not-computed metrics, notes and protocol."""
    sections = []
    if results["unavailable"]:
        sections.append(("Not computed", [f"{key}: {reason}" for key, reason in results["unavailable"].items()]))
    if results["notes"]:
        sections.append(("Notes", list(results["notes"])))
    protocol = [
        f"{key}: {value if isinstance(value, str) else json.dumps(value)}" for key, value in results["protocol"].items()
    ]
    sections.append(("Protocol", protocol))
    return sections


# Markdown ------------------------------------------------------------------------------------------------------


def render_markdown(results: dict, tables: list[Table]) -> str:
    parts = [f"# {_title(results)}", "", _summary(results), ""]
    for table in tables:
        parts += [f"## {table.title}", "", _markdown_row(table.headers), _markdown_row(["---"] * len(table.headers))]
        parts += [_markdown_row([_markdown_cell(cell) for cell in row]) for row in table.rows]
        parts.append("")
    for title, lines in _details(results):
        parts += [f"## {title}", "", *[f"- {_markdown_text(line, limit=None)}" for line in lines], ""]
    parts += ["## Model card", "", "```yaml", model_index_yaml(results).rstrip(), "```", ""]
    return "\n".join(parts)


def _markdown_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _markdown_cell(cell) -> str:
    if isinstance(cell, ImageCell):
        return f'<img src="{html.escape(cell.path)}" alt="{cell.alt}" width="{THUMBNAIL_SIZE}">'
    return _markdown_text(str(cell))


def _markdown_text(text: str, limit: int | None = TEXT_CELL_LIMIT) -> str:
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", "<br>")


# HTML ----------------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 80em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td img { display: block; max-width: 192px; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def render_html(results: dict, tables: list[Table], output_dir: Path) -> str:
    """A self-contained page: images of the output folder are embedded as PNG thumbnails."""
    title = _title(results)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>", f"<p>{_summary(results, _html_code)}</p>",
    ]  # fmt: skip
    for table in tables:
        parts += [f"<h2>{html.escape(table.title)}</h2>", "<table>"]
        parts.append("<tr>" + "".join(f"<th>{html.escape(header)}</th>" for header in table.headers) + "</tr>")
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{_html_cell(cell, output_dir)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    for section, lines in _details(results):
        items = [f"<li>{html.escape(line)}</li>" for line in lines]
        parts += [f"<h2>{html.escape(section)}</h2>", "<ul>", *items, "</ul>"]
    parts += ["<h2>Model card</h2>", f"<pre>{html.escape(model_index_yaml(results))}</pre>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _html_code(text) -> str:
    return f"<code>{html.escape(str(text))}</code>"


def _html_cell(cell, output_dir: Path) -> str:
    if isinstance(cell, ImageCell):
        return f'<img src="data:image/png;base64,{_thumbnail_base64(output_dir / cell.path)}" alt="{cell.alt}">'
    return html.escape(str(cell)).replace("\n", "<br>")


def _thumbnail_base64(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        thumbnail = image.convert("RGB")
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = ["model_index_yaml", "render_html", "render_markdown", "report_tables", "write_report"]
