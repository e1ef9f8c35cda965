# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Deterministic, resumable mixture of training sources by task-family ratios (the curriculum's I2T / T2I /
interleaved percentages).

Every random choice derives from `(seed, shard, draw counter)`, and every source is an ordered stream per epoch
(shuffled with `seed + epoch`), so the state of a stream is a handful of integers: the number of draws and, per
source, `(epoch, position)`. Restoring them replays nothing and skips exactly the consumed rows.

Sharding: a run with `world_size` processes and `gradient_accumulation_steps` micro-batches per step has
`num_shards = world_size * gradient_accumulation_steps` streams; process `r` feeds micro-batch `a` from shard
`r * gradient_accumulation_steps + a`. One process with accumulation 2 therefore sees exactly the data of two
processes without accumulation.
"""

import itertools
import random
from collections.abc import Iterator

import datasets
from datasets.distributed import split_dataset_by_node

from .config import TASKS, ConfigError, DatasetArguments
from .readers import load_training_dataset, source_task


class SourceStream:
    """One source, one shard: rows in a fixed order per epoch, restartable at `(epoch, position)`."""

    def __init__(self, spec: DatasetArguments, label: str, seed: int, shard: int, num_shards: int, shuffle: bool):
        self.spec = spec
        self.label = label
        self.seed = seed
        self.shard = shard
        self.num_shards = num_shards
        self.shuffle = shuffle
        self.dataset = load_training_dataset(spec, label=label)
        self.task = source_task(spec, self.dataset)
        self.epoch = 0
        self.position = 0
        self._iterator: Iterator | None = None

    def _open_epoch(self) -> Iterator:
        dataset = self.dataset
        if self.num_shards > 1:
            dataset = split_dataset_by_node(dataset, rank=self.shard, world_size=self.num_shards)
        if self.shuffle:
            dataset = dataset.shuffle(seed=self.seed + self.epoch, buffer_size=self.spec.shuffle_buffer_size)
        # Skipping by iteration (`IterableDataset.skip` does not commute with node splitting + shuffling).
        return itertools.islice(iter(dataset), self.position, None)

    def __next__(self) -> dict:
        if self._iterator is None:
            self._iterator = self._open_epoch()
        row = next(self._iterator, None)
        if row is None and self.position:  # end of an epoch: the next one, reshuffled
            self.epoch, self.position = self.epoch + 1, 0
            self._iterator = self._open_epoch()
            row = next(self._iterator, None)
        if row is None:
            raise ConfigError(f"dataset {self.label!r} has no rows for shard {self.shard} of {self.num_shards}; it "
                              f"needs at least {self.num_shards} rows.")
        self.position += 1
        return row

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict):
        self.epoch, self.position, self._iterator = state["epoch"], state["position"], None


class MixtureStream:
    """Draws samples: a task family by `ratios`, then a source of that family by its `weight`, then its next row.

    Yields schema samples with two extra keys: `_draw` (the draw counter, used to seed per-sample randomness such as
    condition dropout) and `_source` (the source label).
    """

    def __init__(self, sources: list[SourceStream], ratios: dict[str, float], seed: int, shard: int = 0):
        self.sources = sources
        self.seed = seed
        self.shard = shard
        self.draws = 0
        by_task = {task: [s for s in sources if s.task == task] for task in TASKS}
        for task, ratio in ratios.items():
            if ratio > 0 and not by_task[task]:
                raise ConfigError(f"data.mixture gives {task!r} the ratio {ratio} but no dataset is of that task; "
                                  f"set its ratio to 0 or add a dataset with `task: {task}`.")
        self.tasks = [task for task in TASKS if ratios.get(task, 0) > 0]
        self.task_weights = [ratios[task] for task in self.tasks]
        self.sources_by_task = {task: by_task[task] for task in self.tasks}
        unused = [s.label for s in sources if s.task not in self.tasks]
        if unused:
            raise ConfigError(f"datasets {unused} are of a task whose data.mixture ratio is 0; remove them or give "
                              "their task a ratio.")

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        rng = random.Random(f"mixture/{self.seed}/{self.shard}/{self.draws}")
        task = rng.choices(self.tasks, weights=self.task_weights)[0]
        candidates = self.sources_by_task[task]
        source = rng.choices(candidates, weights=[s.spec.weight for s in candidates])[0]
        sample = next(source)
        sample = {**sample, "_draw": self.draws, "_source": source.label}
        self.draws += 1
        return sample

    def state_dict(self) -> dict:
        return {"draws": self.draws, "sources": {s.label: s.state_dict() for s in self.sources}}

    def load_state_dict(self, state: dict):
        self.draws = state["draws"]
        for source in self.sources:
            source.load_state_dict(state["sources"][source.label])


def dataset_label(spec: DatasetArguments, index: int) -> str:
    """A stable name for a source in logs, errors and checkpoints."""
    return f"{index}:{spec.path}"


def build_mixture(
    specs: list[DatasetArguments], ratios: dict[str, float], seed: int, shard: int, num_shards: int, shuffle: bool
) -> MixtureStream:
    """One [`MixtureStream`] over all sources for one shard."""
    datasets.disable_progress_bars()
    sources = [SourceStream(spec, dataset_label(spec, i), seed, shard, num_shards, shuffle) for i, spec in
               enumerate(specs)]
    return MixtureStream(sources, ratios, seed, shard)


__all__ = ["MixtureStream", "SourceStream", "build_mixture", "dataset_label"]
