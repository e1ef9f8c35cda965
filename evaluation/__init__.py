"""Evaluation tools for UniMedVL."""

from .metrics import load_metric, metric_path

__all__ = ["load_metric", "metric_path"]
