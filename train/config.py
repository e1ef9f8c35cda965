# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Training configuration: four dataclass sections (`model`, `data`, `training`, `lora`) read from one YAML file.

Every key is checked: a key that does not exist is an error that names it, its section and the valid keys (with the
closest match), so a typo never silently falls back to a default. Defaults are the release's fine-tuning recipe (see
`train/README.md`); the stage configs in `train/configs/` spell every value out.

```python
config = load_config("train/configs/tiny.yaml", overrides=["training.max_steps=20"])
```
"""

import argparse
import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TASKS = ("understanding", "generation", "interleaved")
DATASET_FORMATS = ("messages", "caption", "vqa", "unimed5m", "unimed5m_t2i")


class ConfigError(ValueError):
    """A training config that cannot be used: unknown keys, wrong types, invalid values."""


@dataclass
class ModelArguments:
    """What to train.

    Either `pretrained_model_name_or_path` (our HF layout or the original release layout, local folder or Hub id), or
    `config` (a [`UniMedVLConfig`] as a dict, for training from scratch, e.g. the tiny CI model) together with
    `tokenizer_name_or_path`. The frozen VAE comes from `vae_name_or_path` (the release's `ae.safetensors`, a folder
    holding it, or a diffusers `AutoencoderKL` folder) or, for tests, from `vae_config` (a randomly initialised
    `AutoencoderKL` with these keyword arguments). Without either, samples that need latents are an error.
    """

    pretrained_model_name_or_path: str | None = None
    original_weights: str = "ema"
    config: dict | None = None
    tokenizer_name_or_path: str | None = None
    vae_name_or_path: str | None = None
    vae_config: dict | None = None
    torch_dtype: str = "float32"
    attn_implementation: str = "sdpa"
    init_generation_expert_from_understanding: bool = False

    def validate(self):
        if (self.pretrained_model_name_or_path is None) == (self.config is None):
            raise ConfigError("model: set exactly one of `pretrained_model_name_or_path` or `config`.")
        if self.config is not None and self.tokenizer_name_or_path is None:
            raise ConfigError("model: building from `config` needs `tokenizer_name_or_path`.")
        if self.vae_name_or_path is not None and self.vae_config is not None:
            raise ConfigError("model: set at most one of `vae_name_or_path` or `vae_config`.")
        _check_choice("model.torch_dtype", self.torch_dtype, ("float32", "bfloat16", "float16"))
        _check_choice("model.original_weights", self.original_weights, ("ema", "model"))


@dataclass
class DatasetArguments:
    """One training source, read with `datasets.load_dataset(path, name, data_files=..., data_dir=..., split=...,
    streaming=...)`; see `train/README.md` for the formats and the sample schema."""

    path: str
    name: str | None = None
    data_files: str | list | dict | None = None
    data_dir: str | None = None
    split: str = "train"
    revision: str | None = None
    streaming: bool = False
    format: str = "messages"
    columns: dict = field(default_factory=dict)
    image_root: str | None = None
    task: str | None = None
    weight: float = 1.0
    shuffle_buffer_size: int = 1000

    def validate(self, where: str):
        _check_choice(f"{where}.format", self.format, DATASET_FORMATS)
        if self.task is not None:
            _check_choice(f"{where}.task", self.task, TASKS)
        if self.weight <= 0:
            raise ConfigError(f"{where}.weight must be > 0, got {self.weight}.")


@dataclass
class DataArguments:
    """Sources, mixture ratios per task family, image rules, condition dropout and the per-step token budget."""

    datasets: list[DatasetArguments] = field(default_factory=list)
    mixture: dict = field(default_factory=lambda: {"understanding": 1.0, "generation": 1.0, "interleaved": 1.0})
    max_tokens_per_step: int = 10240
    max_tokens_hard_cap: int = 11520
    max_tokens_per_sample: int = 10240
    on_long_sample: str = "error"
    on_bad_image: str = "skip"
    text_cond_dropout: float = 0.3
    vit_cond_dropout: float = 0.05
    vae_cond_dropout: float = 0.05
    vit_resize: list = field(default_factory=lambda: [980, 378, 14, 2_007_040])
    vae_resize: list = field(default_factory=lambda: [1024, 512, 16, 14 * 14 * 9 * 1024])
    shuffle: bool = True
    seed: int = 42

    def validate(self):
        if not self.datasets:
            raise ConfigError("data.datasets is empty: list at least one training source.")
        for index, dataset in enumerate(self.datasets):
            dataset.validate(f"data.datasets[{index}]")
        unknown = sorted(set(self.mixture) - set(TASKS))
        if unknown:
            raise ConfigError(f"data.mixture: unknown task(s) {unknown}; valid tasks are {list(TASKS)}.")
        if any(ratio < 0 for ratio in self.mixture.values()) or not any(self.mixture.values()):
            raise ConfigError(f"data.mixture ratios must be >= 0 and not all 0, got {self.mixture}.")
        if not 0 < self.max_tokens_per_step <= self.max_tokens_hard_cap:
            raise ConfigError("data: need 0 < max_tokens_per_step <= max_tokens_hard_cap.")
        if not 0 < self.max_tokens_per_sample <= self.max_tokens_hard_cap:
            raise ConfigError("data: need 0 < max_tokens_per_sample <= max_tokens_hard_cap.")
        _check_choice("data.on_long_sample", self.on_long_sample, ("error", "skip"))
        _check_choice("data.on_bad_image", self.on_bad_image, ("error", "skip"))
        for name in ("text_cond_dropout", "vit_cond_dropout", "vae_cond_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be in [0, 1), got {getattr(self, name)}.")
        for name in ("vit_resize", "vae_resize"):
            value = getattr(self, name)
            if len(value) != 4 or not all(isinstance(v, int) and v > 0 for v in value):
                raise ConfigError(f"data.{name} must be [max_size, min_size, stride, max_pixels], got {value}.")


@dataclass
class TrainingArguments:
    """Optimisation, precision, freezing, EMA, logging and checkpointing."""

    output_dir: str = "unimedvl-output"
    max_steps: int = 1000
    learning_rate: float = 1e-5
    lr_scheduler: str = "constant"
    warmup_steps: int = 2000
    min_learning_rate: float = 1e-7
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-15
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    mixed_precision: str = "bf16"
    ce_weight: float = 0.25
    mse_weight: float = 1.0
    timestep_shift: float | None = None
    ema_decay: float = 0.995
    freeze_vit: bool = True
    freeze_understanding: bool = False
    freeze_generation: bool = False
    logging_steps: int = 10
    save_steps: int = 2000
    save_total_limit: int | None = None
    report_to: list = field(default_factory=lambda: ["tensorboard"])
    final_weights: str = "ema"
    resume_from_checkpoint: str | None = None
    seed: int = 42

    def validate(self):
        _check_choice("training.lr_scheduler", self.lr_scheduler, ("constant", "cosine"))
        _check_choice("training.mixed_precision", self.mixed_precision, ("no", "bf16", "fp16"))
        _check_choice("training.final_weights", self.final_weights, ("ema", "model"))
        if self.max_steps < 1 or self.gradient_accumulation_steps < 1 or self.save_steps < 1 or self.logging_steps < 1:
            raise ConfigError("training: max_steps, gradient_accumulation_steps, save_steps and logging_steps must be "
                              ">= 1.")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"training.ema_decay must be in [0, 1) (0 disables EMA), got {self.ema_decay}.")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError("training.save_total_limit must be >= 1 or null.")
        if self.freeze_understanding and self.freeze_generation and self.freeze_vit:
            raise ConfigError("training: every part is frozen; nothing would train (use `lora:` for adapters).")


@dataclass
class LoraArguments:
    """PEFT LoRA on the decoder projections of the selected experts (`understanding`, `generation`); the base model is
    frozen and only adapters train. `target_modules` (a regex or a list of names) overrides the expert selection."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    experts: list = field(default_factory=lambda: ["understanding", "generation"])
    target_modules: str | list | None = None

    def validate(self):
        unknown = sorted(set(self.experts) - {"understanding", "generation"})
        if unknown or not self.experts:
            raise ConfigError(f"lora.experts must be a non-empty subset of ['understanding', 'generation'], got "
                              f"{self.experts}.")
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}.")


@dataclass
class TrainConfig:
    """The whole YAML file. `lora` is `None` (full fine-tuning) unless the file has a `lora:` section."""

    model: ModelArguments
    data: DataArguments
    training: TrainingArguments = field(default_factory=TrainingArguments)
    lora: LoraArguments | None = None

    def validate(self):
        self.model.validate()
        self.data.validate()
        self.training.validate()
        if self.lora is not None:
            self.lora.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------------------
# Strict parsing
# ---------------------------------------------------------------------------------------------------------------------


def _check_choice(name: str, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}.")


def _unknown_key_error(where: str, key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"Unknown key {key!r} in `{where}`.{hint} Valid keys: {', '.join(valid)}.")


def _coerce(value, annotation, where: str):
    """Checks (and, for YAML's `1e-5` strings, converts) a value against a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {annotation}.")
    if dataclasses.is_dataclass(annotation):
        return _from_dict(annotation, value, where)
    if origin is list or annotation is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        (item_type,) = typing.get_args(annotation) or (typing.Any,)
        return [_coerce(item, item_type, f"{where}[{index}]") for index, item in enumerate(value)]
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}.")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}.")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}.")
        return value
    return value


def _from_dict(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"`{where}` must be a mapping, got {data!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise _unknown_key_error(where, key, list(fields))
    missing = [
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"`{where}` is missing required key(s) {missing}.")
    return cls(**{key: _coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()})


def _set_override(raw: dict, assignment: str):
    """Applies `section.key=value` (value parsed as YAML) to the raw config mapping."""
    if "=" not in assignment:
        raise ConfigError(f"Override {assignment!r} must look like `section.key=value`.")
    dotted, text = assignment.split("=", 1)
    *parents, leaf = dotted.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Override {assignment!r}: `{part}` is not a section.")
    node[leaf] = yaml.safe_load(text)


def _resolve_relative_paths(config: TrainConfig, base_dir: Path):
    """Relative model/tokenizer/VAE/data paths that exist next to the YAML file are resolved against it; others are
    left as they are (relative to the working directory, or Hub ids)."""

    def resolve(value):
        if isinstance(value, str) and not os.path.isabs(value) and (base_dir / value).exists():
            return str((base_dir / value).resolve())
        if isinstance(value, list):
            return [resolve(item) for item in value]
        if isinstance(value, dict):
            return {key: resolve(item) for key, item in value.items()}
        return value

    model = config.model
    for name in ("pretrained_model_name_or_path", "tokenizer_name_or_path", "vae_name_or_path"):
        setattr(model, name, resolve(getattr(model, name)))
    for dataset in config.data.datasets:
        for name in ("path", "data_files", "data_dir", "image_root"):
            setattr(dataset, name, resolve(getattr(dataset, name)))


def config_from_dict(raw: dict, base_dir: str | os.PathLike | None = None) -> TrainConfig:
    """Builds and validates a [`TrainConfig`] from a mapping (unknown keys anywhere are errors)."""
    config = _from_dict(TrainConfig, raw, "config")
    if base_dir is not None:
        _resolve_relative_paths(config, Path(base_dir))
    config.validate()
    return config


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Reads a YAML training config, applies `section.key=value` overrides and validates everything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Training config {path} does not exist.")
    raw = yaml.safe_load(path.read_text()) or {}
    for assignment in overrides:
        _set_override(raw, assignment)
    return config_from_dict(raw, base_dir=path.parent)


def add_arguments(parser: argparse.ArgumentParser):
    """Command-line arguments shared by `unimedvl train` and `python -m unimedvl.train`."""
    parser.add_argument("config", help="training YAML (see train/configs/)")
    parser.add_argument("--resume_from_checkpoint", "--resume-from-checkpoint", dest="resume_from_checkpoint",
                        default=None,
                        help="'latest' (the highest complete checkpoint of output_dir) or a checkpoint folder")
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", default=None,
                        help="overrides training.output_dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any config value (YAML syntax), e.g. --set training.max_steps=10")


__all__ = [
    "ConfigError",
    "DataArguments",
    "DatasetArguments",
    "LoraArguments",
    "ModelArguments",
    "TASKS",
    "TrainConfig",
    "TrainingArguments",
    "add_arguments",
    "config_from_dict",
    "load_config",
]
