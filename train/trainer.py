# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The UniMedVL trainer: a plain Accelerate loop over packed rows of mixed understanding / generation / interleaved
samples, with the reference's losses (CE and flow-matching MSE, each a token mean over the global batch).

```bash
accelerate launch -m unimedvl.train train/configs/tiny.yaml          # or: unimedvl train train/configs/tiny.yaml
accelerate launch --config_file train/configs/accelerate/fsdp.yaml -m unimedvl.train train/configs/stage3.yaml \
    --resume_from_checkpoint latest
```

One optimizer step = `gradient_accumulation_steps` packed rows per process. Row `a` of process `r` comes from data
shard `r * gradient_accumulation_steps + a`, so the global batch of a step does not depend on how it is split over
processes. Loss terms are normalised by the global token counts of the step (all-reduced before the forward), so the
gradient is the same on one process with accumulation as on several processes.

Outputs in `training.output_dir`: `checkpoint-<step>/` (atomic, see [`checkpointing`]), `metrics.jsonl` (one line per
step), tracker logs (`logs/`), and `final/`: the model in our HF layout (EMA weights by default) with its processor and,
when a VAE was used, `vae/` (diffusers `AutoencoderKL`); with `lora:` only the adapter.
"""

import argparse
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import DistributedType, ProjectConfiguration, is_npu_available, is_xpu_available, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_constant_schedule_with_warmup, get_cosine_with_min_lr_schedule_with_warmup

from ..modeling.configuration_unimedvl import UniMedVLConfig
from ..modeling.image_processing_unimedvl import UniMedVLImageProcessor
from ..modeling.modeling_unimedvl import UniMedVLForConditionalGeneration
from ..modeling.original_checkpoint import SPECIAL_TOKENS, resolve_original_checkpoint
from ..modeling.processing_unimedvl import UniMedVLProcessor
from .checkpointing import (
    checkpoint_dir,
    commit_checkpoint,
    prune_checkpoints,
    read_trainer_state,
    remove_stale_temporaries,
    resolve_checkpoint,
    temporary_dir,
)
from .config import ModelArguments, TrainConfig, add_arguments, load_config
from .ema import ExponentialMovingAverage
from .mixture import build_mixture
from .packing import SampleEncoder, TokenBudgetPacker, collate_packed, encode_latent_tokens

logger = get_logger(__name__)

METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------


def build_processor(model_args: ModelArguments) -> UniMedVLProcessor:
    """Our processor: from `tokenizer_name_or_path` (a tokenizer folder) or from the pretrained model's files."""
    if model_args.tokenizer_name_or_path is not None:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path)
        return UniMedVLProcessor(image_processor=UniMedVLImageProcessor(), tokenizer=tokenizer)
    return UniMedVLProcessor.from_pretrained(model_args.pretrained_model_name_or_path)


def build_model(model_args: ModelArguments, tokenizer) -> UniMedVLForConditionalGeneration:
    """Loads the pretrained model, or builds a randomly initialised one from `model.config` with the vocabulary size and
    special-token ids of `tokenizer`."""
    dtype = _DTYPES[model_args.torch_dtype]
    if model_args.pretrained_model_name_or_path is not None:
        model = UniMedVLForConditionalGeneration.from_pretrained(
            model_args.pretrained_model_name_or_path,
            torch_dtype=dtype,
            attn_implementation=model_args.attn_implementation,
            original_weights=model_args.original_weights,
        )
    else:
        token_ids = {field: tokenizer.convert_tokens_to_ids(token) for field, token in SPECIAL_TOKENS.items()}
        text_config = {**model_args.config.get("text_config", {}), "vocab_size": len(tokenizer)}
        text_config.update({k: token_ids[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")})
        config = UniMedVLConfig(**{**model_args.config, "text_config": text_config, **token_ids})
        config._attn_implementation = model_args.attn_implementation
        model = UniMedVLForConditionalGeneration(config).to(dtype)
    if model_args.init_generation_expert_from_understanding:
        model.model.language_model.init_generation_expert_from_understanding()
    return model


def build_vae(model_args: ModelArguments):
    """The frozen VAE: `vae_name_or_path` (the release's `ae.safetensors`, a folder holding it, or a diffusers
    `AutoencoderKL` folder), `vae_config` (random, for tests), else the pretrained checkpoint's own (`ae.safetensors` of
    the original layout, or the `vae/` subfolder of our layout); `None` when there is none (understanding-only)."""
    from diffusers import AutoencoderKL

    from ..pipelines.autoencoder_unimedvl import AE_WEIGHTS_NAME, load_original_autoencoder

    if model_args.vae_config is not None:
        return AutoencoderKL(**model_args.vae_config).requires_grad_(False).eval()
    path, subfolder = model_args.vae_name_or_path, None
    if path is None and model_args.pretrained_model_name_or_path is not None:
        pretrained = model_args.pretrained_model_name_or_path
        original = resolve_original_checkpoint(pretrained)
        if original is not None and (original / AE_WEIGHTS_NAME).is_file():
            path = str(original)
        else:
            path, subfolder = pretrained, "vae"
    if path is None:
        return None
    if Path(path, AE_WEIGHTS_NAME).is_file() or Path(path).suffix == ".safetensors":
        vae = load_original_autoencoder(path)
    else:
        try:
            vae = AutoencoderKL.from_pretrained(path, subfolder=subfolder)
        except OSError:
            if subfolder is None:
                raise
            return None  # a pretrained model without a VAE: fine for understanding-only training
    return vae.requires_grad_(False).eval()


def parameter_group(name: str) -> str:
    """`vit`, `generation` (the `*_moe_gen` expert and the latent heads) or `understanding` (everything else:
    embeddings, the understanding expert, `lm_head`, the ViT connector)."""
    if "vision_model." in name:
        return "vit"
    if "_moe_gen" in name or any(key in name for key in ("vae2llm", "llm2vae", "time_embedder")):
        return "generation"
    return "understanding"


def freeze_parameters(model, training_args):
    """Applies the `freeze_vit` / `freeze_understanding` / `freeze_generation` options."""
    frozen = {"vit": training_args.freeze_vit, "understanding": training_args.freeze_understanding,
              "generation": training_args.freeze_generation}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not frozen[parameter_group(name)])


def count_trainable_parameters(model) -> dict[str, int]:
    """Trainable parameters per group (after freezing and LoRA)."""
    counts = {"vit": 0, "understanding": 0, "generation": 0}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            counts[parameter_group(name)] += parameter.numel()
    return counts


def build_scheduler(optimizer, training_args):
    if training_args.lr_scheduler == "cosine":
        return get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, training_args.warmup_steps, training_args.max_steps, min_lr=training_args.min_learning_rate
        )
    return get_constant_schedule_with_warmup(optimizer, training_args.warmup_steps)


def has_accelerator_device() -> bool:
    return torch.cuda.is_available() or torch.backends.mps.is_available() or is_xpu_available() or is_npu_available()


def _flat_hparams(config: dict, prefix: str = "") -> dict:
    """Flattened config for trackers (which take scalars only)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_hparams(value, f"{name}/"))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


# ---------------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------------


class UniMedVLTrainer:
    """Builds everything from a [`TrainConfig`] and runs `train()`."""

    def __init__(self, config: TrainConfig):
        self.config = config
        args = config.training
        self.output_dir = Path(args.output_dir)
        self.accelerator = Accelerator(
            cpu=not has_accelerator_device(),  # Accelerate's multi-process CPU (gloo) mode needs `cpu=True`
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=args.report_to or None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            step_scheduler_with_optimizer=False,
        )
        self.resume_path = None
        if args.resume_from_checkpoint is not None:  # fail before building anything heavy
            self.resume_path = resolve_checkpoint(args.resume_from_checkpoint, self.output_dir)
        set_seed(args.seed)

        self.processor = build_processor(config.model)
        model = build_model(config.model, self.processor.tokenizer)
        self.model_config = model.config
        freeze_parameters(model, args)
        if args.gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if config.lora is not None:
            from .lora import apply_lora

            model = apply_lora(model, config.lora)
        self.trainable = count_trainable_parameters(model)
        self.vae = build_vae(config.model)
        if self.vae is not None:
            self.vae.to(self.accelerator.device)

        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                      eps=args.adam_epsilon, weight_decay=args.weight_decay)
        self.scheduler = build_scheduler(optimizer, args)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.ema = None
        if args.ema_decay > 0:
            if self.accelerator.distributed_type == DistributedType.DEEPSPEED and self._zero_stage() == 3:
                raise ValueError("EMA needs each process's parameters in memory; with DeepSpeed ZeRO-3 use FSDP for "
                                 "sharded EMA, or set training.ema_decay: 0.")
            self.ema = ExponentialMovingAverage(self.model, args.ema_decay)
        self.packers = self._build_packers()
        self.step = 0

    def _zero_stage(self) -> int:
        plugin = self.accelerator.state.deepspeed_plugin
        return plugin.zero_stage if plugin is not None else 0

    def _build_packers(self) -> list[TokenBudgetPacker]:
        data, args = self.config.data, self.config.training
        config = self.model_config
        encoder = SampleEncoder(
            self.processor.tokenizer,
            data,
            timestep_shift=args.timestep_shift if args.timestep_shift is not None else config.timestep_shift,
            latent_downsample=config.latent_downsample,
            max_latent_size=config.max_latent_size,
            vit_patch_size=config.vision_config.patch_size,
            vit_max_patches_per_side=config.vision_config.max_num_patches_per_side,
        )
        accumulation = args.gradient_accumulation_steps
        num_shards = self.accelerator.num_processes * accumulation
        shards = [self.accelerator.process_index * accumulation + a for a in range(accumulation)]
        return [
            TokenBudgetPacker(build_mixture(data.datasets, data.mixture, data.seed, shard, num_shards, data.shuffle),
                              encoder, data, data.seed, shard)
            for shard in shards
        ]

    # -- one step ----------------------------------------------------------------------------------------------------

    def _noise_generator(self, shard: int) -> torch.Generator:
        """The RNG of a row's VAE posterior sample and flow noise: a function of (seed, data shard, step), so noise is
        independent across shards and identical however the shards are spread over processes, and after a resume."""
        seed = ((self.config.training.seed * 1_000_003 + shard) * 1_000_003 + self.step) % 2**63
        return torch.Generator(self.accelerator.device).manual_seed(seed)

    def _forward(self, batch: dict, shard: int, global_ce_tokens: int, global_mse_tokens: int) -> tuple[torch.Tensor,
                                                                                                          ...]:
        """Forward of one packed row; returns (CE part, MSE part) as shares of the global token means."""
        device = self.accelerator.device
        generator = self._noise_generator(shard)
        inputs = {key: batch[key].to(device) for key in ("input_ids", "position_ids", "sample_ids")}
        if batch["pixel_values"] is not None:
            inputs.update(pixel_values=batch["pixel_values"].to(device),
                          image_grid_hw=batch["image_grid_hw"].to(device))
        if batch["vae_images"]:
            if self.vae is None:
                raise ValueError("Samples with images to generate or VAE conditioning need a VAE: set "
                                 "model.vae_name_or_path (or model.vae_config for tests).")
            config = self.model_config
            inputs.update(
                latents=encode_latent_tokens(self.vae, [image.to(device) for image in batch["vae_images"]],
                                             config.latent_patch_size, generator=generator),
                latent_grid_hw=batch["latent_grid_hw"].to(device),
                latent_timesteps=batch["latent_timesteps"].to(device),
            )
            if batch["num_mse_tokens"]:
                inputs["latent_loss_mask"] = batch["latent_loss_mask"].to(device)
                inputs["latent_noise"] = torch.randn(batch["num_mse_tokens"], config.patch_latent_dim,
                                                     generator=generator, device=device)
        if batch["num_ce_tokens"]:
            inputs.update(labels=batch["labels"].to(device), num_items_in_batch=global_ce_tokens)
        output = self.model(**inputs, logits_to_keep=1, use_cache=False)
        zero = torch.zeros((), device=device)
        ce = output.loss_ce if output.loss_ce is not None else zero
        mse = output.loss_mse * (batch["num_mse_tokens"] / global_mse_tokens) if output.loss_mse is not None else zero
        return ce, mse

    def training_step(self) -> dict:
        args = self.config.training
        started = time.perf_counter()
        batches = [collate_packed(packer.next_row()) for packer in self.packers]
        local = torch.tensor([[b["num_ce_tokens"], b["num_mse_tokens"], b["num_tokens"], b["num_samples"]]
                              for b in batches], device=self.accelerator.device).sum(0)
        ce_tokens, mse_tokens, tokens, samples = self.accelerator.reduce(local, reduction="sum").tolist()
        world = self.accelerator.num_processes
        ce_total = mse_total = 0.0
        grad_norm = None
        for packer, batch in zip(self.packers, batches):
            with self.accelerator.accumulate(self.model):
                ce, mse = self._forward(batch, packer.shard, max(ce_tokens, 1), max(mse_tokens, 1))
                loss = args.ce_weight * ce + args.mse_weight * mse
                # DDP/FSDP average gradients over processes and `backward` divides by the accumulation steps; the
                # global token normalisation already accounts for both.
                self.accelerator.backward(loss * world * args.gradient_accumulation_steps)
                ce_total, mse_total = ce_total + ce.detach(), mse_total + mse.detach()
                if self.accelerator.sync_gradients:
                    grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        ce_total, mse_total = self.accelerator.reduce(torch.stack([ce_total, mse_total]), reduction="sum").tolist()
        elapsed = time.perf_counter() - started
        record = {"step": self.step + 1, "loss": args.ce_weight * ce_total + args.mse_weight * mse_total}
        if ce_tokens:
            record["loss_ce"] = ce_total
        if mse_tokens:
            record["loss_mse"] = mse_total
        record.update(
            lr=self.scheduler.get_last_lr()[0],
            grad_norm=None if grad_norm is None else float(grad_norm),
            tokens=int(tokens),
            ce_tokens=int(ce_tokens),
            mse_tokens=int(mse_tokens),
            samples=int(samples),
            tokens_per_second=tokens / elapsed,
        )
        return record

    # -- checkpoints -------------------------------------------------------------------------------------------------

    def save_checkpoint(self):
        accelerator = self.accelerator
        rank = accelerator.process_index
        temporary, final = temporary_dir(self.output_dir, self.step), checkpoint_dir(self.output_dir, self.step)
        if accelerator.is_main_process:
            remove_stale_temporaries(self.output_dir)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        if self.ema is not None:
            save_file(self.ema.state_dict(), temporary / f"ema-rank{rank}.safetensors")
        data_state = [packer.state_dict() for packer in self.packers]
        (temporary / f"data_state-rank{rank}.json").write_text(json.dumps(data_state))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"step": self.step, "world_size": accelerator.num_processes,
                     "gradient_accumulation_steps": self.config.training.gradient_accumulation_steps}
            commit_checkpoint(temporary, final, state)
            prune_checkpoints(self.output_dir, self.config.training.save_total_limit)
        accelerator.wait_for_everyone()

    def load_checkpoint(self, path: Path):
        state = read_trainer_state(path)
        args = self.config.training
        layout = (self.accelerator.num_processes, args.gradient_accumulation_steps)
        if (state["world_size"], state["gradient_accumulation_steps"]) != layout:
            raise ValueError(f"{path} was written by {state['world_size']} process(es) with "
                             f"gradient_accumulation_steps {state['gradient_accumulation_steps']}; resuming needs the "
                             f"same layout, got {layout}.")
        self.accelerator.load_state(str(path))
        rank = self.accelerator.process_index
        if self.ema is not None:
            ema_state = load_file(path / f"ema-rank{rank}.safetensors", device=str(self.accelerator.device))
            self.ema.load_state_dict(ema_state)
        for packer, data_state in zip(self.packers, json.loads((path / f"data_state-rank{rank}.json").read_text())):
            packer.load_state_dict(data_state)
        self.step = state["step"]
        logger.info(f"Resumed from {path} at step {self.step}.")

    # -- final model -------------------------------------------------------------------------------------------------

    def save_final_model(self) -> Path:
        """Saves the model (EMA weights when `final_weights: ema`) in our HF layout, with processor and VAE."""
        accelerator = self.accelerator
        final = self.output_dir / FINAL_DIR
        use_ema = self.ema is not None and self.config.training.final_weights == "ema"
        with self.ema.swapped_in() if use_ema else nullcontext():
            state_dict = accelerator.get_state_dict(self.model)
            if accelerator.is_main_process:
                accelerator.unwrap_model(self.model).save_pretrained(final, state_dict=state_dict)
        if accelerator.is_main_process:
            # The saved processor resizes images for the ViT as training did.
            max_size, min_size, stride, max_pixels = self.config.data.vit_resize
            self.processor.image_processor = UniMedVLImageProcessor(
                size={"longest_edge": max_size, "shortest_edge": min_size}, patch_size=stride, max_pixels=max_pixels
            )
            self.processor.save_pretrained(final)
            if self.vae is not None:
                self.vae.save_pretrained(final / "vae")
            (final / "training_config.yaml").write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        accelerator.wait_for_everyone()
        return final

    # -- loop --------------------------------------------------------------------------------------------------------

    def _truncate_metrics(self, last_step: int):
        """Keeps the `metrics.jsonl` lines up to `last_step` (a resumed run rewrites the steps after its checkpoint)."""
        path = self.output_dir / METRICS_FILE
        lines = path.read_text().splitlines() if path.is_file() else []
        path.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["step"] <= last_step))

    def _append_metrics(self, record: dict):
        with (self.output_dir / METRICS_FILE).open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def train(self) -> Path:
        """Runs to `training.max_steps`; returns the folder of the final model."""
        args = self.config.training
        accelerator = self.accelerator
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        if self.resume_path is not None:
            self.load_checkpoint(self.resume_path)
        if accelerator.is_main_process:
            self._truncate_metrics(self.step)
        accelerator.init_trackers("unimedvl", config=_flat_hparams(self.config.to_dict()))
        logger.info(f"Trainable parameters per group: {self.trainable}; processes: {accelerator.num_processes}; "
                    f"accumulation: {args.gradient_accumulation_steps}.", main_process_only=True)

        self.model.train()
        progress = tqdm(total=args.max_steps, initial=self.step, disable=not accelerator.is_local_main_process,
                        desc="training")
        interval = []
        while self.step < args.max_steps:
            record = self.training_step()
            self.step += 1
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"Non-finite loss at step {self.step}: {record}.")
            if accelerator.is_main_process:
                self._append_metrics(record)
            interval.append(record)
            progress.update(1)
            progress.set_postfix(loss=f"{record['loss']:.4f}")
            if self.step % args.logging_steps == 0 or self.step == args.max_steps:
                accelerator.log(self._interval_summary(interval), step=self.step)
                interval = []
            if self.step % args.save_steps == 0 or self.step == args.max_steps:
                self.save_checkpoint()
        progress.close()
        final = self.save_final_model()
        accelerator.end_training()
        return final

    def _interval_summary(self, records: list[dict]) -> dict:
        summary = {}
        for key in ("loss", "loss_ce", "loss_mse", "grad_norm", "tokens_per_second"):
            values = [r[key] for r in records if r.get(key) is not None]
            if values:
                summary[f"train/{key}"] = sum(values) / len(values)
        summary["train/lr"] = records[-1]["lr"]
        stats = [packer.stats for packer in self.packers]
        summary["data/skipped_bad_images"] = sum(s.skipped_bad_images for s in stats)
        summary["data/skipped_long_samples"] = sum(s.skipped_long_samples for s in stats)
        for task in ("understanding", "generation", "interleaved"):
            summary[f"data/samples_{task}"] = sum(s.samples[task] for s in stats)
        return summary


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


def run_from_args(args: argparse.Namespace) -> Path:
    overrides = list(args.overrides)
    if args.resume_from_checkpoint is not None:
        overrides.append(f"training.resume_from_checkpoint={args.resume_from_checkpoint}")
    if args.output_dir is not None:
        overrides.append(f"training.output_dir={args.output_dir}")
    config = load_config(args.config, overrides)
    return UniMedVLTrainer(config).train()


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m unimedvl.train", description="Train or fine-tune UniMedVL.")
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))


__all__ = ["UniMedVLTrainer", "build_model", "count_trainable_parameters", "build_processor", "build_vae", "main",
           "parameter_group", "run_from_args"]
