# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`UniMedVLPipeline`: medical text-to-image and image-conditioned generation with UniMedVL, as a diffusers pipeline.

How one image is generated (the release's `InterleaveInferencer`, reproduced exactly):

1. Three contexts are built per prompt and prefilled once into a key/value cache:
   - **cond**: [think prompt] [VAE block, ViT block of each input image] [prompt] [thought];
   - **text-uncond** (text CFG): the cond context without its last text block — [think prompt] [images], empty for
     plain text-to-image;
   - **image-uncond** (image CFG): the text blocks only — [think prompt] [prompt] (for plain text-to-image this is the
     cond context itself).
2. The image is a block `<|vision_start|>` + h·w latent tokens + `<|vision_end|>` at the context's next RoPE position,
   denoised by flow matching from t = 1 (noise) to t = 0 with Euler steps on the shifted schedule. At each step the
   active branches run as ONE batched forward against their frozen caches (`cfg_parallel=True`), or one after another
   as in the release (`cfg_parallel=False`); guidance and renormalisation combine their velocities. With the opt-in
   `step_cache`, some steps skip the model and extrapolate the branch velocities in t from the last full steps.
3. The final latent is unpacked and decoded by the VAE.

This file ships as Hub custom code: it imports only torch, numpy, PIL, transformers, diffusers and its sibling modules.
"""

import os
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import PreTrainedModel, ProcessorMixin
from transformers.cache_utils import DynamicCache

from .autoencoder_unimedvl import AE_WEIGHTS_NAME, decode_latents, encode_image_latents, load_original_autoencoder
from .presets import (
    GENERATION_THINK_PROMPT,
    IMAGE_TO_IMAGE_DEFAULTS,
    TASK_PRESETS,
    TEXT_TO_IMAGE_DEFAULTS,
    task_instruction,
)
from .scheduling_unimedvl import build_flow_match_scheduler, set_reference_timesteps


CFG_RENORM_TYPES = ("global", "channel", "text_channel")
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
DESCRIBE_MAX_TOKENS = 800  # the release's understanding pass before editing


@dataclass
class UniMedVLPipelineOutput(BaseOutput):
    """
    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`):
            Generated images (`output_type="latent"`: model-space latents of shape `(batch, 16, height / 8, width / 8)`,
            the tensor the VAE decodes after undoing the scale and shift).
        texts (`list[str]`, *optional*):
            Text the model wrote before generating each image: its plan in think mode, or its description of the
            input image when `describe_image=True`.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    texts: list[str] | None = None


def pack_latents(latents: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`(batch, channels, p·h, p·w)` → `(batch, h·w, p·p·channels)`, tokens row-major, values ordered (row, col, c).

    This is the release's layout (diffusers' Flux packing orders values (c, row, col) and is not interchangeable)."""
    batch, channels, height, width = latents.shape
    h, w = height // patch_size, width // patch_size
    latents = latents.reshape(batch, channels, h, patch_size, w, patch_size)
    return latents.permute(0, 2, 4, 3, 5, 1).reshape(batch, h * w, patch_size * patch_size * channels)


def unpack_latents(tokens: torch.Tensor, grid_hw: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Inverse of [`pack_latents`]: `(batch, h·w, p·p·channels)` → `(batch, channels, p·h, p·w)`."""
    batch = tokens.shape[0]
    h, w = grid_hw
    tokens = tokens.reshape(batch, h, w, patch_size, patch_size, -1)
    return tokens.permute(0, 5, 1, 3, 2, 4).reshape(batch, -1, h * patch_size, w * patch_size)


def guided_velocity(
    v_cond: torch.Tensor,
    v_text: torch.Tensor | None,
    v_image: torch.Tensor | None,
    guidance_scale: float,
    image_guidance_scale: float,
    cfg_renorm_type: str,
    cfg_renorm_min: float,
) -> torch.Tensor:
    """The release's two-stage classifier-free guidance with renormalisation, per image.

    `v_text` / `v_image` are the text- and image-unconditional velocities (None when that branch did not run), all of
    shape `(batch, tokens, channels)`. With r(a, b) = clamp(‖a‖ / (‖b‖ + 1e-8), cfg_renorm_min, 1):
    - `global` / `channel`: v = v_i + s_I·(v_t + s_T·(v_c − v_t) − v_i), then v·r(v_c, v), norms over a whole image
      (`global`) or over the channels of each token (`channel`);
    - `text_channel`: the text-guided velocity is renormalised per token against v_c first, then the image step is
      applied without renormalisation.
    """
    if v_text is None:
        return v_cond

    def renorm(guided: torch.Tensor, dims) -> torch.Tensor:
        ratio = torch.linalg.vector_norm(v_cond, dim=dims, keepdim=True) / (
            torch.linalg.vector_norm(guided, dim=dims, keepdim=True) + 1e-8
        )
        return guided * ratio.clamp(min=cfg_renorm_min, max=1.0)

    text_guided = v_text + guidance_scale * (v_cond - v_text)
    if cfg_renorm_type == "text_channel":
        text_guided = renorm(text_guided, dims=-1)
        return text_guided if v_image is None else v_image + image_guidance_scale * (text_guided - v_image)
    guided = text_guided if v_image is None else v_image + image_guidance_scale * (text_guided - v_image)
    return renorm(guided, dims=(1, 2) if cfg_renorm_type == "global" else -1)


@dataclass(frozen=True)
class StepCacheConfig:
    """Opt-in step caching (TaylorSeer-style): only some denoising steps run the model; the others extrapolate the
    branch velocities from the last full steps with a polynomial in t (Newton divided differences, i.e. a Taylor
    expansion whose derivatives are finite differences over the non-uniform timestep grid). Guidance is still applied
    at every step to the extrapolated branch velocities.

    With `num_inference_steps` = n, step i (0-based) runs the model when i < `warmup_steps`, i >= n − `cooldown_steps`,
    or (i − `warmup_steps`) % `interval` == `interval` − 1; it also runs when the step needs a guidance branch the
    history does not hold (e.g. the first step inside `cfg_interval`). Model forwards drop roughly `interval`-fold.
    Callbacks still run after every step; latents a callback returns are denoised from there on, but an extrapolated
    velocity only reflects them from the next full step.

    Args:
        interval (`int`, defaults to 3): one full step every `interval` steps after the warm-up; 1 disables caching.
        order (`int`, defaults to 2): order of the extrapolating polynomial (0: reuse the last velocity, 1: linear,
            2: quadratic), i.e. how many derivatives are estimated; it needs `order` + 1 full steps of history (with
            fewer, the highest order the history allows is used).
        warmup_steps (`int`, defaults to 3): leading steps that always run the model (the velocity changes fastest
            near the noise, and the derivatives need a history).
        cooldown_steps (`int`, defaults to 0): trailing steps that always run the model (fine detail is settled last).
    """

    interval: int = 3
    order: int = 2
    warmup_steps: int = 3
    cooldown_steps: int = 0

    def __post_init__(self):
        minimums = {"interval": 1, "order": 0, "warmup_steps": 0, "cooldown_steps": 0}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`step_cache.{name}` must be an integer >= {minimum}, got {value!r}.")
        if self.order > 2:
            raise ValueError(f"`step_cache.order` must be 0, 1 or 2, got {self.order!r}.")

    def is_full_step(self, step: int, num_steps: int) -> bool:
        """Whether step `step` of `num_steps` runs the model (before the history check of [`VelocityExtrapolator`])."""
        if step < self.warmup_steps or step >= num_steps - self.cooldown_steps:
            return True
        return (step - self.warmup_steps) % self.interval == self.interval - 1


def resolve_step_cache(step_cache) -> StepCacheConfig | None:
    """`step_cache` as given to the pipeline (None, a [`StepCacheConfig`] or a dict of its fields) → config or None."""
    if step_cache is None or isinstance(step_cache, StepCacheConfig):
        return step_cache
    if isinstance(step_cache, dict):
        unknown = set(step_cache) - set(StepCacheConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"`step_cache` has unknown fields {sorted(unknown)}; expected some of "
                f"{sorted(StepCacheConfig.__dataclass_fields__)}."
            )
        return StepCacheConfig(**step_cache)
    raise ValueError(f"`step_cache` must be None, a StepCacheConfig or a dict, got {type(step_cache).__name__}.")


class VelocityExtrapolator:
    """History of the stacked branch velocities `(branches, batch, tokens, channels)` at the last full steps, as
    Newton divided differences in t, and their extrapolation to another t.

    The branches are ordered (cond, text-uncond, image-uncond); a prediction may ask for a prefix of those held
    (guidance switching off drops the trailing branches), never for more."""

    def __init__(self, order: int):
        self.order = order
        self.times: list[float] = []  # the last full steps' t, newest first
        self.differences: list[torch.Tensor] = []  # f[t0], f[t0, t1], f[t0, t1, t2], ...

    def can_predict(self, branches: int) -> bool:
        return bool(self.differences) and self.differences[0].shape[0] >= branches

    def update(self, time: float, velocities: torch.Tensor) -> None:
        """Record a full step: `velocities` `(branches, batch, tokens, channels)` at t = `time`."""
        branches = velocities.shape[0]
        previous = [d[:branches] for d in self.differences] if self.can_predict(branches) else []
        differences = [velocities]
        # f[t0..tj] = (f[t0..tj-1] − f[t1..tj]) / (t0 − tj), where f[t1..tj] is the previous (j − 1)-th difference.
        for j in range(min(self.order, len(previous))):
            differences.append((differences[j] - previous[j]) / (time - self.times[j]))
        self.times = [time, *(self.times if previous else [])][: self.order + 1]
        self.differences = differences

    def predict(self, time: float, branches: int) -> torch.Tensor:
        """The Newton polynomial through the recorded steps, at t = `time`: `(branches, batch, tokens, channels)`."""
        velocities = self.differences[0][:branches].clone()
        weight = 1.0
        for j in range(1, len(self.differences)):
            weight *= time - self.times[j - 1]
            velocities += weight * self.differences[j][:branches]
        return velocities


@dataclass
class PromptContext:
    """Token layout of one context (the cached prefix of one guidance branch) and the tensors its placeholders need."""

    input_ids: list[int] = field(default_factory=list)
    pixel_values: list[torch.Tensor] = field(default_factory=list)
    image_grid_hw: list[tuple[int, int]] = field(default_factory=list)
    latents: list[torch.Tensor] = field(default_factory=list)
    latent_grid_hw: list[tuple[int, int]] = field(default_factory=list)

    def copy(self) -> "PromptContext":
        return PromptContext(
            list(self.input_ids),
            list(self.pixel_values),
            list(self.image_grid_hw),
            list(self.latents),
            list(self.latent_grid_hw),
        )


@dataclass
class ConditioningImage:
    """An input image prepared for both encoders: packed clean VAE latent tokens and ViT patches."""

    latent_tokens: torch.Tensor  # (h·w, 64)
    latent_grid_hw: tuple[int, int]
    pixel_values: torch.Tensor  # (patches, 588)
    image_grid_hw: tuple[int, int]
    vit_image: PIL.Image.Image  # the image as the ViT sees it, for the optional understanding pass


class UniMedVLPipeline(DiffusionPipeline):
    r"""
    Medical image generation with UniMedVL: text-to-image over 8 modalities (chest X-ray, CT, MRI, ultrasound,
    histopathology, fundus, OCT, endoscopy) and image-conditioned generation (virtual staining, super-resolution,
    modality translation, counterfactuals, free instructions).

    ```python
    >>> from unimedvl import UniMedVLPipeline
    >>> pipe = UniMedVLPipeline.from_pretrained("General-Medical-AI/UniMedVL", dtype=torch.bfloat16).to("cuda")
    >>> image = pipe("A PA chest X-ray showing a right lower lobe pneumonia.").images[0]
    >>> edited = pipe(task="translate", image="t2.dcm").images[0]
    ```

    Args:
        model ([`UniMedVLForConditionalGeneration`]): the UniMedVL model (its weights are shared with understanding).
        vae ([`AutoencoderKL`]): the FLUX-style autoencoder (16 latent channels, scale 0.3611, shift 0.1159).
        scheduler ([`FlowMatchEulerDiscreteScheduler`]): Euler flow matching on the release's shifted schedule.
        processor ([`UniMedVLProcessor`]): tokenizer and image rules.
    """

    model_cpu_offload_seq = "model->vae"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        model: PreTrainedModel,
        vae: AutoencoderKL,
        scheduler: FlowMatchEulerDiscreteScheduler,
        processor: ProcessorMixin,
    ):
        super().__init__()
        self.register_modules(model=model, vae=vae, scheduler=scheduler, processor=processor)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # ------------------------------------------------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        dtype: torch.dtype | None = None,
        device_map=None,
        torch_dtype: torch.dtype | None = None,
        quantization_config=None,
        **kwargs,
    ):
        r"""
        Load the pipeline from any UniMedVL checkpoint: the ORIGINAL release layout (`ema.safetensors`,
        `ae.safetensors`, `llm_config.json`, ... — e.g. `General-Medical-AI/UniMedVL`), a checkpoint written by
        `unimedvl convert` (transformers files at the root, diffusers `model_index.json` + `vae/` + `scheduler/`), or a
        folder written by `save_pretrained`. The model's weights are read once and shared with understanding.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): local folder or Hub repo id.
            dtype (`torch.dtype`, *optional*): dtype of the model and the VAE (default: as stored). `torch_dtype` is
                accepted as its older name.
            device_map (`str` or `dict`, *optional*): passed to the model's `from_pretrained` (e.g. `"auto"`).
            quantization_config (*optional*): passed to the model's `from_pretrained` (e.g.
                `TorchAoConfig("int8_weight_only")` or `BitsAndBytesConfig(load_in_8bit=True)`); the VAE stays in `dtype`.
            model / vae / scheduler / processor (*optional*): ready components to use instead of loading them.
            revision, cache_dir, token, local_files_only: Hub options.

        Without the `unimedvl` package (running as Hub custom code) this defers to
        `DiffusionPipeline.from_pretrained`, which needs `trust_remote_code=True`.
        """
        dtype = dtype if dtype is not None else torch_dtype
        model_class, processor_class = _registered_unimedvl_classes()
        if model_class is None:
            if quantization_config is not None:  # diffusers' form: a `PipelineQuantizationConfig`
                kwargs["quantization_config"] = quantization_config
            return super().from_pretrained(pretrained_model_name_or_path, dtype=dtype, device_map=device_map, **kwargs)
        hub_kwargs = {key: kwargs.pop(key) for key in ("revision", "cache_dir", "token", "local_files_only") if key in kwargs}
        path = pretrained_model_name_or_path
        model = kwargs.pop("model", None)
        if model is None:
            location = _component_location(path, "model", "config.json", hub_kwargs)
            model = model_class.from_pretrained(
                path, dtype=dtype, device_map=device_map, quantization_config=quantization_config, **location, **hub_kwargs
            )
        processor = kwargs.pop("processor", None)
        if processor is None:
            location = _component_location(path, "processor", "tokenizer_config.json", hub_kwargs)
            processor = processor_class.from_pretrained(path, **location, **hub_kwargs)
        vae = kwargs.pop("vae", None)
        if vae is None:
            if _has_file(path, "vae/config.json", hub_kwargs):
                vae = AutoencoderKL.from_pretrained(path, subfolder="vae", dtype=dtype, **hub_kwargs)
            else:  # the release's ae.safetensors
                vae_file = _resolve_file(path, AE_WEIGHTS_NAME, hub_kwargs)
                vae = load_original_autoencoder(vae_file, torch_dtype=dtype or model.dtype)
            vae = vae.to(model.device)
        scheduler = kwargs.pop("scheduler", None)
        if scheduler is None:
            if _has_file(path, "scheduler/scheduler_config.json", hub_kwargs):
                scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(path, subfolder="scheduler", **hub_kwargs)
            else:
                scheduler = build_flow_match_scheduler(TEXT_TO_IMAGE_DEFAULTS.timestep_shift)
        if kwargs:
            raise TypeError(f"Unexpected arguments for UniMedVLPipeline.from_pretrained: {sorted(kwargs)}.")
        return cls(model=model, vae=vae, scheduler=scheduler, processor=processor)

    # ------------------------------------------------------------------------------------------------------------
    # Input checks
    # ------------------------------------------------------------------------------------------------------------

    @property
    def latent_patch_size(self) -> int:
        return self.model.config.latent_patch_size

    @property
    def latent_downsample(self) -> int:
        """Pixels per side covered by one latent token (16)."""
        return self.model.config.latent_downsample

    def check_inputs(
        self,
        prompts,
        images,
        height,
        width,
        num_inference_steps,
        guidance_scale,
        image_guidance_scale,
        cfg_interval,
        cfg_renorm_type,
        cfg_renorm_min,
        timestep_shift,
        num_images_per_prompt,
        latents,
        image_latents,
        output_type,
        callback_on_step_end_tensor_inputs,
    ):
        """Validate every argument before any model call; each error names the argument and what was expected."""
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError("`prompt` must be a non-empty string or a list of non-empty strings.")
        step = self.latent_downsample
        largest = self.model.config.max_latent_size * step
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % step:
                raise ValueError(f"`{name}` must be a positive multiple of {step}, got {value!r}.")
            if value > largest:
                raise ValueError(f"`{name}`={value} exceeds the model's largest image side ({largest} pixels).")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.")
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be an integer >= 1, got {num_images_per_prompt!r}.")
        for name, value in (("guidance_scale", guidance_scale), ("image_guidance_scale", image_guidance_scale)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        if len(cfg_interval) != 2 or not 0.0 <= cfg_interval[0] <= cfg_interval[1] <= 1.0:
            raise ValueError(f"`cfg_interval` must be (low, high) with 0 <= low <= high <= 1, got {cfg_interval!r}.")
        if cfg_renorm_type not in CFG_RENORM_TYPES:
            raise ValueError(f"`cfg_renorm_type` must be one of {CFG_RENORM_TYPES}, got {cfg_renorm_type!r}.")
        if not 0.0 <= cfg_renorm_min <= 1.0:
            raise ValueError(f"`cfg_renorm_min` must be in [0, 1], got {cfg_renorm_min!r}.")
        if not np.isfinite(timestep_shift) or timestep_shift <= 0:
            raise ValueError(f"`timestep_shift` must be a positive number, got {timestep_shift!r}.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` may only name {self._callback_tensor_inputs}, got {sorted(unknown)}."
            )
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"Got {len(images)} image lists for {len(prompts)} prompts; pass one per prompt.")
        if latents is not None:
            expected = (
                len(prompts) * num_images_per_prompt,
                self.model.config.latent_channels,
                height // self.vae_scale_factor,
                width // self.vae_scale_factor,
            )
            _check_tensor("latents", latents, expected)
        if image_latents is not None:
            count = sum(len(group) for group in images) if images is not None else 0
            if image_latents.ndim != 4 or image_latents.shape[0] != count:
                raise ValueError(
                    f"`image_latents` must hold one latent per conditioning image ({count}) with shape "
                    f"(num_images, {self.model.config.latent_channels}, h, w), got {tuple(image_latents.shape)}."
                )
            _check_tensor("image_latents", image_latents, None)

    # ------------------------------------------------------------------------------------------------------------
    # Contexts
    # ------------------------------------------------------------------------------------------------------------

    def _token_id(self, token: str) -> int:
        return self.processor.tokenizer.convert_tokens_to_ids(token)

    def _add_text(self, context: PromptContext, text: str) -> None:
        ids = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        context.input_ids += [self._token_id("<|im_start|>"), *ids, self._token_id("<|im_end|>")]

    def _add_image_block(self, context: PromptContext, token_id: int, count: int) -> None:
        config = self.model.config
        context.input_ids += [config.vision_start_token_id, *[token_id] * count, config.vision_end_token_id]

    def _add_vae_image(self, context: PromptContext, image: ConditioningImage) -> None:
        self._add_image_block(context, self.model.config.latent_token_id, image.latent_tokens.shape[0])
        context.latents.append(image.latent_tokens)
        context.latent_grid_hw.append(image.latent_grid_hw)

    def _add_vit_image(self, context: PromptContext, image: ConditioningImage) -> None:
        self._add_image_block(context, self.model.config.image_token_id, image.pixel_values.shape[0])
        context.pixel_values.append(image.pixel_values)
        context.image_grid_hw.append(image.image_grid_hw)

    def prepare_conditioning_image(
        self, image, image_latents: torch.Tensor | None, generator, device
    ) -> ConditioningImage:
        """Resize an input image with the release's generation rules and encode it for both encoders.

        The rules are the image processor's `generation_vae_resize` / `generation_vit_resize` (the release: the VAE
        sees it at up to 1024 px, stride 16; the ViT sees that VAE-sized image resized again, 980 / 387 / 14). The VAE
        latent is a posterior sample (seeded by `generator`) unless `image_latents` (already scaled, `(16, h, w)`) is
        given."""
        image_processor = self.processor.image_processor
        vae_image = image_processor.resize_image(image, *image_processor.generation_vae_resize)
        if image_latents is None:
            pixels = torch.from_numpy(image_processor.to_normalized_array(vae_image))[None].to(device)
            image_latents = encode_image_latents(self.vae, pixels, generator=generator)[0]
        expected = (vae_image.height // self.vae_scale_factor, vae_image.width // self.vae_scale_factor)
        if tuple(image_latents.shape[-2:]) != expected:
            raise ValueError(
                f"`image_latents` of shape {tuple(image_latents.shape)} do not match the conditioning image, which the "
                f"VAE sees at {vae_image.width}x{vae_image.height} (latent {expected})."
            )
        latent_tokens = pack_latents(image_latents[None].to(device, torch.float32), self.latent_patch_size)[0]
        longest, shortest, stride, max_pixels = image_processor.generation_vit_resize
        vit = image_processor(
            vae_image,
            size={"longest_edge": longest, "shortest_edge": shortest},
            patch_size=stride,
            max_pixels=max_pixels,
            return_tensors="pt",
        )
        grid = tuple(int(v) for v in vit["image_grid_hw"][0])
        vit_image = image_processor.resize_image(vae_image, longest, shortest, stride, max_pixels)
        latent_grid = (expected[0] // self.latent_patch_size, expected[1] // self.latent_patch_size)
        return ConditioningImage(latent_tokens, latent_grid, vit["pixel_values"].to(device), grid, vit_image)

    def build_contexts(
        self, prompt: str, images: list[ConditioningImage], think_prompt: str | None
    ) -> tuple[PromptContext, PromptContext, PromptContext]:
        """The cond / text-uncond / image-uncond contexts of one prompt (see the module docstring)."""
        cond, image_uncond = PromptContext(), PromptContext()
        if think_prompt is not None:
            self._add_text(cond, think_prompt)
            self._add_text(image_uncond, think_prompt)
        for image in images:
            self._add_vae_image(cond, image)
            self._add_vit_image(cond, image)
        text_uncond = cond.copy()
        self._add_text(cond, prompt)
        self._add_text(image_uncond, prompt)
        return cond, text_uncond, image_uncond

    def _collate(self, contexts: list[PromptContext], device) -> dict:
        """Left-pad contexts into one batch of model inputs."""
        length = max(len(context.input_ids) for context in contexts)
        pad = self.processor.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(contexts), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(contexts), length), dtype=torch.long)
        for row, context in enumerate(contexts):
            if context.input_ids:
                input_ids[row, length - len(context.input_ids) :] = torch.tensor(context.input_ids)
                attention_mask[row, length - len(context.input_ids) :] = 1
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        pixel_values = [value for context in contexts for value in context.pixel_values]
        if pixel_values:
            inputs["pixel_values"] = torch.cat(pixel_values).to(device)
            inputs["image_grid_hw"] = torch.tensor([g for c in contexts for g in c.image_grid_hw], device=device)
        latents = [value for context in contexts for value in context.latents]
        if latents:
            inputs["latents"] = torch.cat(latents).to(device)
            inputs["latent_grid_hw"] = torch.tensor([g for c in contexts for g in c.latent_grid_hw], device=device)
            inputs["latent_timesteps"] = torch.zeros(len(latents), device=device)  # clean conditioning: t = 0
        return inputs

    @torch.no_grad()
    def write_text(self, context: PromptContext, max_new_tokens: int, device) -> str:
        """Greedy decoding after `context` (the release's `gen_text`): starts at `<|im_start|>`, stops at `<|im_end|>`."""
        context = context.copy()
        context.input_ids.append(self._token_id("<|im_start|>"))
        inputs = self._collate([context], device)
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True)

    @torch.no_grad()
    def prefill(self, contexts: list[PromptContext], device) -> "FrozenContext":
        """Run all contexts through the model once; keep their keys/values and the position of what follows."""
        inputs = self._collate(contexts, device)
        # The position a following block gets: append one text token to every context and read its position.
        extended_ids = torch.nn.functional.pad(inputs["input_ids"], (0, 1), value=self._token_id("<|im_start|>"))
        extended_mask = torch.nn.functional.pad(inputs["attention_mask"], (0, 1), value=1)
        next_positions = self.model.model.get_position_ids(extended_ids, extended_mask)[:, -1]
        if inputs["input_ids"].shape[1] == 0:
            return FrozenContext(None, inputs["attention_mask"], next_positions)
        output = self.model(**inputs, use_cache=True, logits_to_keep=1)
        layers = [(layer.keys, layer.values) for layer in output.cache.layers]
        return FrozenContext(layers, inputs["attention_mask"], next_positions)

    # ------------------------------------------------------------------------------------------------------------
    # Denoising
    # ------------------------------------------------------------------------------------------------------------

    def prepare_latents(self, batch_size, grid_hw, generator, device, latents=None) -> torch.Tensor:
        """Initial noise in the packed token layout `(batch, h·w, 64)`, float32.

        Drawn as the release does (one `(h·w, 64)` standard-normal draw per image), so a generator seeded like the
        release's global RNG reproduces its noise; `latents` in the diffusers layout `(batch, 16, H/8, W/8)` are
        packed instead."""
        if latents is not None:
            return pack_latents(latents.to(device, torch.float32), self.latent_patch_size)
        tokens = grid_hw[0] * grid_hw[1]
        shape = (tokens, self.model.config.patch_latent_dim)
        generators = generator if isinstance(generator, list) else [generator] * batch_size
        noise = [randn_tensor(shape, generator=g, device=torch.device("cpu"), dtype=torch.float32) for g in generators]
        return torch.stack(noise).to(device)

    @torch.no_grad()
    def predict_velocity(
        self, latents: torch.Tensor, sigma: torch.Tensor, context: "FrozenContext", rows: slice, grid_hw, device
    ) -> torch.Tensor:
        """One forward of the generated block `[<|vision_start|>, latent tokens, <|vision_end|>]` for the context rows
        `rows`, against their frozen caches (nothing is written back). Returns `llm2vae` velocities `(rows, h·w, 64)`."""
        config = self.model.config
        num_rows, tokens = latents.shape[0], latents.shape[1]
        query = [config.vision_start_token_id, *[config.latent_token_id] * tokens, config.vision_end_token_id]
        input_ids = torch.tensor(query, device=device).expand(num_rows, -1)
        cache = context.cache(rows, self.model.config)
        attention_mask = torch.cat([context.attention_mask[rows], torch.ones_like(input_ids)], dim=1)
        position_ids = context.next_positions[rows].unsqueeze(1).expand(-1, input_ids.shape[1])
        # Through the top-level module, so that offloading hooks (`enable_model_cpu_offload`) see the call.
        output = self.model(
            input_ids=input_ids,
            latents=latents.reshape(num_rows * tokens, -1),
            latent_grid_hw=torch.tensor([grid_hw] * num_rows, device=device),
            latent_timesteps=sigma.to(device).expand(num_rows),
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            logits_to_keep=1,
        )
        return output.latent_velocity.reshape(num_rows, tokens, -1).float()

    def branch_velocities(self, latents, sigma, context, branches: int, shared_image_context: bool, cfg_parallel, grid_hw, device):
        """Velocities of the active branches (cond, then text-uncond, then image-uncond): one batched forward, or
        one forward per branch as in the release. When the image-uncond context equals cond (plain text-to-image), its
        velocity IS the cond velocity and is not recomputed."""
        batch = latents.shape[0]
        computed = min(branches, 2) if shared_image_context else branches
        if cfg_parallel:
            stacked = latents.repeat(computed, 1, 1)
            outputs = self.predict_velocity(stacked, sigma, context, slice(0, computed * batch), grid_hw, device)
            velocities = list(outputs.split(batch))
        else:
            velocities = [
                self.predict_velocity(latents, sigma, context, slice(i * batch, (i + 1) * batch), grid_hw, device)
                for i in range(computed)
            ]
        if branches == 3 and shared_image_context:
            velocities.append(velocities[0])
        return velocities + [None] * (3 - len(velocities))

    def step_velocities(
        self, latents, sigma, context, branches: int, shared_image_context: bool, cfg_parallel, grid_hw, device,
        extrapolator: VelocityExtrapolator | None = None, full_step: bool = True,
    ):  # fmt: skip
        """[`branch_velocities`] of one step, or, with step caching on a step that need not run the model, their
        extrapolation from the last full steps. Full steps are recorded in `extrapolator`. Returns
        `[v_cond, v_text, v_image]`, each `(batch, h·w, 64)` or None for an inactive branch."""
        if not full_step and extrapolator.can_predict(branches):
            return [*extrapolator.predict(float(sigma), branches), *[None] * (3 - branches)]
        velocities = self.branch_velocities(
            latents, sigma, context, branches, shared_image_context, cfg_parallel, grid_hw, device
        )
        if extrapolator is not None:
            extrapolator.update(float(sigma), torch.stack(velocities[:branches]))
        return velocities

    # ------------------------------------------------------------------------------------------------------------
    # Call
    # ------------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image=None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        cfg_interval: tuple[float, float] | None = None,
        cfg_renorm_type: str | None = None,
        cfg_renorm_min: float = 0.0,
        timestep_shift: float | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        image_latents: torch.Tensor | None = None,
        task: str | None = None,
        task_fields: dict | None = None,
        think: bool = False,
        describe_image: bool | None = None,
        max_text_tokens: int = 1000,
        cfg_parallel: bool = True,
        step_cache: StepCacheConfig | dict | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ):
        r"""
        Generate medical images from text, or from an input image and an instruction.

        Args:
            prompt (`str` or `list[str]`):
                What to generate, or the instruction for the input image. Optional when `task` is given (the preset's
                instruction is used).
            image (image, list of images, or list of lists, *optional*):
                Conditioning image(s): PIL images, arrays, file paths (PNG/JPEG/DICOM/NIfTI) or DICOM datasets. One
                image (or list of images) per prompt. Each enters the context as a clean VAE block then a ViT block.
            height / width (`int`, *optional*):
                Output size, multiples of 16 and at most 1024. Default: the input image's aspect-preserving size under
                the VAE rules (`image_processor.generation_vae_resize`; the release: max side 1024), else a square of
                that rule's longest side (1024 × 1024 for the release).
            num_inference_steps (`int`, *optional*, defaults to 49):
                Model evaluations (Euler steps). The release's "50 timesteps" is 49 evaluations.
            guidance_scale (`float`, *optional*):
                Text CFG scale. Default 3.0 for text-to-image (release inferencer), 4.0 with an input image (release
                editing script). CFG is off entirely when it is <= 1.
            image_guidance_scale (`float`, *optional*):
                Image CFG scale (1.5 / 2.0 by the same rule); that branch runs only when it is > 1. Without an input
                image the release's image-uncond context is the prompt alone, which equals cond for plain text-to-image.
            cfg_interval (`tuple[float, float]`, *optional*):
                Guidance is applied only when low < t <= high on the shifted time (1 = noise). Default (0.4, 1.0) /
                (0.0, 1.0).
            cfg_renorm_type (`str`, *optional*):
                `"global"` (default for text-to-image), `"channel"` or `"text_channel"` (default with an image); see
                [`guided_velocity`].
            cfg_renorm_min (`float`, *optional*, defaults to 0.0):
                Lower clamp of the renormalisation ratio; 1.0 disables renormalisation.
            timestep_shift (`float`, *optional*, defaults to 3.0):
                Shift s of the schedule t ← s·t / (1 + (s − 1)·t).
            num_images_per_prompt (`int`, *optional*, defaults to 1):
                Images per prompt (contexts are prefilled once and shared).
            generator (`torch.Generator` or list, *optional*):
                RNG of the VAE posterior sample of input images, then of the initial noise (the release's draw order).
            latents (`torch.Tensor` of shape `(batch, 16, height / 8, width / 8)`, *optional*):
                Initial noise in the VAE latent layout, instead of drawing it.
            image_latents (`torch.Tensor` of shape `(num_images, 16, h, w)`, *optional*):
                Precomputed, already scaled VAE latents of the conditioning images (skips the VAE encode).
            task (`str`, *optional*):
                A preset of [`TASK_PRESETS`]: `"staining"`, `"super-resolution"`, `"translate"`, `"counterfactual"`.
                Supplies the instruction (with `task_fields`, e.g. `{"target": "T1-weighted"}`) and the defaults.
            think (`bool`, *optional*, defaults to `False`):
                The release's think mode: a planning system prompt is prepended and the model writes its plan (greedy,
                up to `max_text_tokens`) before generating; the plan is returned in `texts`.
            describe_image (`bool`, *optional*):
                The release's editing script's understanding pass: the model first answers the instruction about the
                input image (greedy, up to 800 tokens) and that answer is appended to the instruction after a blank
                line. Default: on for the `staining` preset only.
            max_text_tokens (`int`, *optional*, defaults to 1000):
                Token budget of the think-mode plan.
            cfg_parallel (`bool`, *optional*, defaults to `True`):
                Run the active guidance branches as one batched forward per step; `False` runs them one after another
                like the release (same result, slower).
            step_cache ([`StepCacheConfig`] or `dict`, *optional*):
                Opt-in step caching: only some steps run the model, the others extrapolate the branch velocities in t
                from the last full steps (faster, approximate). `None` (default) runs the model at every step.
            output_type (`str`, *optional*, defaults to `"pil"`):
                `"pil"`, `"np"`, `"pt"`, or `"latent"` (the `(batch, 16, height / 8, width / 8)` model-space latent).
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`UniMedVLPipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, *optional*):
                Called as `callback(pipeline, step, timestep, callback_kwargs)` after each step; may return
                `{"latents": ...}` to replace the latents (layout `(batch, 16, height / 8, width / 8)`).
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*):
                Tensors passed in `callback_kwargs` (only `"latents"`).

        Returns:
            [`UniMedVLPipelineOutput`] or `tuple` `(images, texts)`.
        """
        device = self._execution_device
        prompts, images = self._normalize_prompts_and_images(prompt, image, task, task_fields)
        preset = TASK_PRESETS[task] if task is not None else None
        defaults = preset.settings if preset else (IMAGE_TO_IMAGE_DEFAULTS if images else TEXT_TO_IMAGE_DEFAULTS)
        guidance_scale = defaults.guidance_scale if guidance_scale is None else guidance_scale
        image_guidance_scale = defaults.image_guidance_scale if image_guidance_scale is None else image_guidance_scale
        cfg_interval = tuple(defaults.cfg_interval if cfg_interval is None else cfg_interval)
        cfg_renorm_type = defaults.cfg_renorm_type if cfg_renorm_type is None else cfg_renorm_type
        timestep_shift = defaults.timestep_shift if timestep_shift is None else timestep_shift
        num_inference_steps = defaults.num_inference_steps if num_inference_steps is None else num_inference_steps
        describe_image = (preset.describe_image if preset else False) if describe_image is None else describe_image
        height, width = self._default_size(images, height, width)
        step_cache = resolve_step_cache(step_cache)
        self.check_inputs(
            prompts, images, height, width, num_inference_steps, guidance_scale, image_guidance_scale, cfg_interval,
            cfg_renorm_type, cfg_renorm_min, timestep_shift, num_images_per_prompt, latents, image_latents,
            output_type, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        if describe_image and not images:
            raise ValueError("`describe_image=True` needs an input `image`.")

        # 1. Encode the conditioning images and build the three contexts of every prompt.
        conditioning = self._encode_images(images, image_latents, generator, device) if images else [[]] * len(prompts)
        think_prompt = GENERATION_THINK_PROMPT if think else None
        conds, text_unconds, image_unconds, texts = [], [], [], []
        for prompt_text, prompt_images in zip(prompts, conditioning):
            if describe_image:
                description = self._describe(prompt_images, prompt_text, device)
                prompt_text, texts = f"{prompt_text}\n\n{description}", texts + [description]
            cond, text_uncond, image_uncond = self.build_contexts(prompt_text, prompt_images, think_prompt)
            if think:
                plan = self.write_text(cond, max_text_tokens, device)
                self._add_text(cond, plan)
                texts.append(plan)
            for _ in range(num_images_per_prompt):
                conds.append(cond), text_unconds.append(text_uncond), image_unconds.append(image_uncond)
        batch_size = len(conds)
        shared_image_context = all(c.input_ids == u.input_ids and not c.latents for c, u in zip(conds, image_unconds))
        context = self.prefill(conds + text_unconds + ([] if shared_image_context else image_unconds), device)

        # 2. Initial noise, in the packed token layout.
        grid_hw = (height // self.latent_downsample, width // self.latent_downsample)
        latents = self.prepare_latents(batch_size, grid_hw, generator, device, latents)

        # 3. Denoise.
        set_reference_timesteps(self.scheduler, num_inference_steps, timestep_shift, device=device)
        timesteps = self.scheduler.timesteps
        extrapolator = VelocityExtrapolator(step_cache.order) if step_cache is not None else None
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                sigma = self.scheduler.sigmas[i].to(torch.float32)
                in_interval = bool((sigma > cfg_interval[0]) & (sigma <= cfg_interval[1]))
                text_scale = guidance_scale if in_interval else 1.0
                image_scale = image_guidance_scale if in_interval else 1.0
                branches = 1 if text_scale <= 1.0 else (3 if image_scale > 1.0 else 2)
                full_step = extrapolator is None or step_cache.is_full_step(i, num_inference_steps)
                v_cond, v_text, v_image = self.step_velocities(
                    latents, sigma, context, branches, shared_image_context, cfg_parallel, grid_hw, device,
                    extrapolator, full_step,
                )  # fmt: skip
                velocity = guided_velocity(
                    v_cond, v_text, v_image, text_scale, image_scale, cfg_renorm_type, cfg_renorm_min
                )
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    callback_kwargs = {"latents": unpack_latents(latents, grid_hw, self.latent_patch_size)}
                    callback_kwargs = {k: callback_kwargs[k] for k in callback_on_step_end_tensor_inputs or []}
                    returned = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    if "latents" in returned:
                        latents = pack_latents(returned["latents"].to(torch.float32), self.latent_patch_size)
                progress_bar.update()

        # 4. Decode.
        latents = unpack_latents(latents, grid_hw, self.latent_patch_size)
        if output_type == "latent":
            images_out = latents
        else:
            decoded = decode_latents(self.vae, latents)
            images_out = self.image_processor.postprocess(decoded.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        texts = texts or None
        if not return_dict:
            return images_out, texts
        return UniMedVLPipelineOutput(images=images_out, texts=texts)

    # ------------------------------------------------------------------------------------------------------------
    # Helpers of __call__
    # ------------------------------------------------------------------------------------------------------------

    def _normalize_prompts_and_images(self, prompt, image, task, task_fields):
        if task is not None and task not in TASK_PRESETS:
            raise ValueError(f"Unknown `task` {task!r}; choose one of {sorted(TASK_PRESETS)}.")
        if prompt is None and task is not None:
            prompt = task_instruction(task, **(task_fields or {}))
        elif task_fields:
            raise ValueError("`task_fields` only apply when the instruction comes from `task` (pass `prompt=None`).")
        if prompt is None:
            raise ValueError("`prompt` is required (or give a `task` preset).")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if image is None:
            if task is not None:
                raise ValueError(f"`task={task!r}` transforms an input image: pass `image`.")
            return prompts, None
        if not isinstance(image, (list, tuple)):
            image = [image]
        if len(prompts) == 1 and len(image) > 1 and not any(isinstance(i, (list, tuple)) for i in image):
            image = [image]  # several images for one prompt
        groups = [list(group) if isinstance(group, (list, tuple)) else [group] for group in image]
        loaded = [self.processor.image_processor.fetch_images(group) for group in groups]
        return prompts, loaded

    def _default_size(self, images, height, width):
        if height is not None and width is not None:
            return height, width
        rule = self.processor.image_processor.generation_vae_resize
        if not images:  # a square of the largest side the VAE rule allows (1024 for the release)
            return height or rule[0], width or rule[0]
        sizes = {self._fit(group[0], *rule) for group in images}
        if len(sizes) > 1:
            raise ValueError(f"Input images give different output sizes {sorted(sizes)}; pass `height` and `width`.")
        default_width, default_height = sizes.pop()
        return height or default_height, width or default_width

    def _fit(self, image, longest, shortest, stride, max_pixels):
        resized = self.processor.image_processor.resize_image(image, longest, shortest, stride, max_pixels)
        return resized.width, resized.height

    def _encode_images(self, images, image_latents, generator, device) -> list[list[ConditioningImage]]:
        flat_latents = list(image_latents) if image_latents is not None else None
        first_generator = generator[0] if isinstance(generator, list) else generator
        encoded = []
        for group in images:
            encoded.append(
                [
                    self.prepare_conditioning_image(
                        image, flat_latents.pop(0) if flat_latents else None, first_generator, device
                    )
                    for image in group
                ]
            )
        return encoded

    def _describe(self, images: list[ConditioningImage], instruction: str, device) -> str:
        """The release's understanding pass before editing: [ViT blocks] [instruction] → greedy answer."""
        context = PromptContext()
        for image in images:
            self._add_vit_image(context, image)
        self._add_text(context, instruction)
        return self.write_text(context, DESCRIBE_MAX_TOKENS, device)


@dataclass
class FrozenContext:
    """Prefilled keys/values of all context rows (left-padded), reused read-only at every denoising step."""

    layers: list[tuple[torch.Tensor, torch.Tensor]] | None
    attention_mask: torch.Tensor  # (rows, context_length)
    next_positions: torch.Tensor  # (rows,)

    def cache(self, rows: slice, config) -> DynamicCache:
        """A fresh cache holding the selected rows; the forward appends its own tokens to it and it is then dropped."""
        if self.layers is None:
            return DynamicCache(config=config)
        return DynamicCache(ddp_cache_data=[(keys[rows], values[rows]) for keys, values in self.layers])


def _check_tensor(name: str, tensor, expected_shape):
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    if expected_shape is not None and tuple(tensor.shape) != tuple(expected_shape):
        raise ValueError(f"`{name}` must have shape {tuple(expected_shape)}, got {tuple(tensor.shape)}.")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")


def _registered_unimedvl_classes():
    """Our model and processor classes, if the `unimedvl` package registered them with the transformers Auto API."""
    from transformers.models.auto import CONFIG_MAPPING, MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING, PROCESSOR_MAPPING

    if "unimedvl" not in CONFIG_MAPPING:
        return None, None
    config_class = CONFIG_MAPPING["unimedvl"]
    return MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[config_class], PROCESSOR_MAPPING[config_class]


def _has_file(path_or_repo_id, filename: str, hub_kwargs: dict) -> bool:
    if os.path.isdir(path_or_repo_id):
        return os.path.isfile(os.path.join(path_or_repo_id, filename))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        hf_hub_download(str(path_or_repo_id), filename, **hub_kwargs)
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return False
    return True


def _component_location(path_or_repo_id, name: str, marker: str, hub_kwargs: dict) -> dict:
    """`{"subfolder": name}` for a diffusers-style save (`name/marker`), `{}` when the component sits at the root."""
    if _has_file(path_or_repo_id, marker, hub_kwargs) or not _has_file(path_or_repo_id, f"{name}/{marker}", hub_kwargs):
        return {}
    return {"subfolder": name}


def _resolve_file(path_or_repo_id, filename: str, hub_kwargs: dict) -> str:
    if os.path.isdir(path_or_repo_id):
        path = os.path.join(path_or_repo_id, filename)
        if not os.path.isfile(path):
            raise OSError(f"{path_or_repo_id} has no {filename} (the VAE weights of the release).")
        return path
    from huggingface_hub import hf_hub_download

    return hf_hub_download(str(path_or_repo_id), filename, **hub_kwargs)


__all__ = [
    "StepCacheConfig",
    "UniMedVLPipeline",
    "UniMedVLPipelineOutput",
    "VelocityExtrapolator",
    "guided_velocity",
    "pack_latents",
    "unpack_latents",
]
