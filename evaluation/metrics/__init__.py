"""UniMedVL evaluation metrics, shipped as local 🤗 Evaluate modules.

Each metric is a self-contained script ``<name>/<name>.py`` next to this file, so it loads offline::

    from unimedvl.evaluation.metrics import load_metric

    vqa = load_metric("medical_vqa")
    vqa.compute(predictions=["Yes."], references=["yes"])

or, equivalently, ``evaluate.load(metric_path("medical_vqa"))``.
"""

from pathlib import Path

METRICS = ("clip_score", "fid", "image_similarity", "medical_vqa", "radiology_report")


def metric_path(name: str) -> str:
    """Return the folder of the shipped metric `name`, suitable for `evaluate.load`."""
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; the shipped metrics are {', '.join(METRICS)}.")
    return str(Path(__file__).resolve().parent / name)


def load_metric(name: str, **kwargs):
    """Load the shipped metric `name` with `evaluate.load`; `kwargs` are passed on to it."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)
