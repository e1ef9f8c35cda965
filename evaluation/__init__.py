"""Evaluation tools for UniMedVL: metric modules, benchmark adapters, runners and reports.

```python
from unimedvl.evaluation import evaluate_vqa, load_metric
```

See `evaluation/README.md` for the protocol and the `unimedvl eval` command.
"""

from .benchmarks import BENCHMARKS, MissingColumnError, UnknownBenchmarkError, get_benchmark
from .cache import CacheMismatchError
from .data import DatasetSpec, DuplicateExampleIdError, ImageNotFoundError
from .metrics import load_metric, metric_path
from .report import write_report
from .runners import (
    EmptySelectionError,
    evaluate_image_to_image,
    evaluate_report,
    evaluate_text_to_image,
    evaluate_vqa,
)


__all__ = [
    "BENCHMARKS",
    "CacheMismatchError",
    "DatasetSpec",
    "DuplicateExampleIdError",
    "EmptySelectionError",
    "ImageNotFoundError",
    "MissingColumnError",
    "UnknownBenchmarkError",
    "evaluate_image_to_image",
    "evaluate_report",
    "evaluate_text_to_image",
    "evaluate_vqa",
    "get_benchmark",
    "load_metric",
    "metric_path",
    "write_report",
]
