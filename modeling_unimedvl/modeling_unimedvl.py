# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""PyTorch UniMedVL: BAGEL's Mixture-of-Transformers decoder with a SigLIP NaViT tower and latent generation heads.

Data path: token ids (with `<|image_pad|>` placeholders for ViT patches and `<|vision_pad|>` placeholders for VAE latent
tokens) → embeddings (text table, ViT → connector → + sin-cos table, latents → vae2llm + timestep MLP + sin-cos table)
→ MoT decoder layers (text/ViT tokens through the understanding expert, latent tokens through the generation expert,
one joint attention) → `lm_head` for text, `llm2vae` for the flow-matching velocity of latent tokens.

Positions: every image block (`<|vision_start|>` … `<|vision_end|>`) occupies ONE RoPE position, whatever its number of
tokens; text takes one position per token. Attention is causal between blocks and bidirectional inside an image block.
"""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask, create_masks_for_generate
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPast, ModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2MLP,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
    apply_rotary_pos_emb,
    eager_attention_forward,
)
from transformers.models.siglip.modeling_siglip import SiglipEncoder, SiglipEncoderLayer
from transformers.utils.output_capturing import capture_outputs

from .configuration_unimedvl import UniMedVLConfig, UniMedVLTextConfig, UniMedVLVisionConfig
from .original_checkpoint import (
    ORIGINAL_KEY_MAPPING,
    check_checkpoint_folder,
    resolve_original_checkpoint,
    staged_original_checkpoint,
)


# ---------------------------------------------------------------------------------------------------------------------
# Fixed tables and small modules
# ---------------------------------------------------------------------------------------------------------------------


def sincos_position_table(grid_size: int, embed_dim: int) -> torch.Tensor:
    """2-D sin-cos table of a `grid_size × grid_size` grid, shape `(grid_size**2, embed_dim)`.

    Row `r * grid_size + c` is `[E(c), E(r)]` (the column fills the first half), where `E(p)` of size `embed_dim / 2` is
    `[sin(p·ω), cos(p·ω)]` with `ω_k = 10000 ** (-k / (embed_dim / 4))`.
    """
    if embed_dim % 4:
        raise ValueError(f"`embed_dim` must be a multiple of 4 for a 2-D sin-cos table, got {embed_dim}.")
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")

    def encode(coordinate: torch.Tensor) -> torch.Tensor:
        angles = coordinate.reshape(-1, 1).double() * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


def grid_position_ids(grid_hw: torch.Tensor, table_size: int) -> torch.Tensor:
    """Flattened table ids `row * table_size + col` of every cell of every grid, row-major, concatenated.

    Args:
        grid_hw: `(num_images, 2)` rows and columns of each image's patch grid.
        table_size: side of the square position table ("extrapolate" mode: a top-left crop of the table).
    Returns:
        `(sum(h * w),)` long tensor.
    """
    ids = []
    for height, width in grid_hw.tolist():
        rows = torch.arange(height, device=grid_hw.device).unsqueeze(1)
        cols = torch.arange(width, device=grid_hw.device).unsqueeze(0)
        ids.append((rows * table_size + cols).reshape(-1))
    return torch.cat(ids) if ids else grid_hw.new_zeros(0)


def packed_training_mask_function(
    sample_ids: torch.LongTensor | None, noise_token_mask: torch.BoolTensor | None
) -> Callable | None:
    """Extra attention rules of packed training rows, as a transformers mask function (so SDPA, eager and flex
    attention all get them): a query only sees keys of its own sample, and never the tokens of a noised target image
    (those only see each other, through the image-block overlay). `None` when neither rule applies."""
    if sample_ids is None and noise_token_mask is None:
        return None

    def mask_function(batch_idx, head_idx, q_idx, kv_idx):
        allowed = torch.ones_like(kv_idx, dtype=torch.bool)
        if sample_ids is not None:
            allowed = allowed & (sample_ids[batch_idx, q_idx] == sample_ids[batch_idx, kv_idx])
        if noise_token_mask is not None:
            allowed = allowed & ~noise_token_mask[batch_idx, kv_idx]
        return allowed

    return mask_function


def timestep_features(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of `t ∈ [0, 1]` (not scaled by 1000): `[cos(t·f), sin(t·f)]`, `f_k = max_period^(-k/(dim/2))`.

    Args:
        timesteps: `(N,)` float tensor.
    Returns:
        `(N, dim)` float32 tensor.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class UniMedVLPositionTable(nn.Module):
    """A frozen 2-D sin-cos table looked up by flattened grid id. It is stored in checkpoints (the release stores it
    in bf16, and the golden outputs depend on that rounding), so it is a persistent buffer rather than recomputed."""

    def __init__(self, grid_size: int, embed_dim: int):
        super().__init__()
        self.grid_size = grid_size
        self.register_buffer("pos_embed", torch.empty(grid_size * grid_size, embed_dim), persistent=True)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(position_ids, self.pos_embed)


class UniMedVLTimestepEmbedder(nn.Module):
    """t ∈ [0, 1] → sinusoidal features → Linear → SiLU → Linear, one vector per timestep."""

    def __init__(self, feature_dim: int, hidden_size: int):
        super().__init__()
        self.feature_dim = feature_dim
        self.linear_1 = nn.Linear(feature_dim, hidden_size)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        # The bias keeps the compute dtype when a quantiser stores the weight as int8 / uint8.
        features = timestep_features(timesteps, self.feature_dim).to(self.linear_1.bias.dtype)
        return self.linear_2(self.act(self.linear_1(features)))


class UniMedVLConnector(nn.Module):
    """Maps ViT features into the decoder width: Linear → activation → Linear."""

    def __init__(self, config: UniMedVLConfig):
        super().__init__()
        vision_size, text_size = config.vision_config.hidden_size, config.text_config.hidden_size
        self.fc1 = nn.Linear(vision_size, text_size)
        self.act = ACT2FN[config.connector_act]
        self.fc2 = nn.Linear(text_size, text_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(features)))


# ---------------------------------------------------------------------------------------------------------------------
# Mixture-of-Transformers decoder
# ---------------------------------------------------------------------------------------------------------------------


class ExpertRouting:
    """Sends each token of a `(batch, seq, ...)` tensor through the understanding or the generation expert.

    Built once per forward from `gen_token_mask` (True = VAE latent token) and reused by every sub-module of every layer.
    """

    def __init__(self, gen_token_mask: torch.Tensor | None):
        flat = None if gen_token_mask is None else gen_token_mask.reshape(-1)
        if flat is None or not bool(flat.any()):
            self.mode = "und"
        elif bool(flat.all()):
            self.mode = "gen"
        else:
            self.mode = "mixed"
            self.und_index = (~flat).nonzero().squeeze(1)
            self.gen_index = flat.nonzero().squeeze(1)

    def __call__(self, tokens: torch.Tensor, und_module: nn.Module, gen_module: nn.Module) -> torch.Tensor:
        if self.mode == "und":
            return und_module(tokens)
        if self.mode == "gen":
            return gen_module(tokens)
        batch, seq = tokens.shape[:2]
        flat = tokens.reshape(batch * seq, *tokens.shape[2:])
        und_out = und_module(flat.index_select(0, self.und_index))
        gen_out = gen_module(flat.index_select(0, self.gen_index))
        out = und_out.new_zeros((batch * seq, *und_out.shape[1:]))
        out = out.index_copy(0, self.und_index, und_out).index_copy(0, self.gen_index, gen_out.to(und_out.dtype))
        return out.reshape(batch, seq, *out.shape[1:])


class UniMedVLMoTAttention(nn.Module):
    """Grouped-query attention with one set of q/k/v/o projections and q/k norms per expert and a single joint softmax
    over all tokens (keys of both experts live in the same cache)."""

    def __init__(self, config: UniMedVLTextConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        q_size = config.num_attention_heads * self.head_dim
        kv_size = config.num_key_value_heads * self.head_dim
        for suffix in ("", "_moe_gen"):
            setattr(self, f"q_proj{suffix}", nn.Linear(config.hidden_size, q_size, bias=True))
            setattr(self, f"k_proj{suffix}", nn.Linear(config.hidden_size, kv_size, bias=True))
            setattr(self, f"v_proj{suffix}", nn.Linear(config.hidden_size, kv_size, bias=True))
            setattr(self, f"o_proj{suffix}", nn.Linear(q_size, config.hidden_size, bias=False))
            norm = (lambda: Qwen2RMSNorm(self.head_dim, eps=config.rms_norm_eps)) if config.qk_norm else nn.Identity
            setattr(self, f"q_norm{suffix}", norm())
            setattr(self, f"k_norm{suffix}", norm())

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        routing: ExpertRouting,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq = hidden_states.shape[:2]
        heads_shape = (batch, seq, -1, self.head_dim)
        query = routing(hidden_states, self.q_proj, self.q_proj_moe_gen).view(heads_shape)
        key = routing(hidden_states, self.k_proj, self.k_proj_moe_gen).view(heads_shape)
        value = routing(hidden_states, self.v_proj, self.v_proj_moe_gen).view(heads_shape).transpose(1, 2)
        # q/k norms act per head on head_dim, before RoPE.
        query = routing(query, self.q_norm, self.q_norm_moe_gen).transpose(1, 2)
        key = routing(key, self.k_norm, self.k_norm_moe_gen).transpose(1, 2)

        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch, seq, -1).contiguous()
        return routing(attn_output, self.o_proj, self.o_proj_moe_gen), attn_weights


class UniMedVLMoTDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm decoder layer whose norms, attention projections and MLP exist once per expert."""

    def __init__(self, config: UniMedVLTextConfig, layer_idx: int):
        super().__init__()
        self.self_attn = UniMedVLMoTAttention(config, layer_idx)
        self.mlp = Qwen2MLP(config)
        self.mlp_moe_gen = Qwen2MLP(config)
        self.input_layernorm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.input_layernorm_moe_gen = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm_moe_gen = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        routing: ExpertRouting,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states = routing(hidden_states, self.input_layernorm, self.input_layernorm_moe_gen)
        hidden_states, _ = self.self_attn(hidden_states, position_embeddings, attention_mask, routing, cache, **kwargs)
        hidden_states = residual + hidden_states

        residual = hidden_states
        hidden_states = routing(hidden_states, self.post_attention_layernorm, self.post_attention_layernorm_moe_gen)
        hidden_states = routing(hidden_states, self.mlp, self.mlp_moe_gen)
        return residual + hidden_states


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained-model plumbing
# ---------------------------------------------------------------------------------------------------------------------


class UniMedVLPreTrainedModel(PreTrainedModel):
    config: UniMedVLConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["UniMedVLMoTDecoderLayer", "SiglipEncoderLayer"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": UniMedVLMoTDecoderLayer, "attentions": UniMedVLMoTAttention}

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, UniMedVLPositionTable):
            init.copy_(module.pos_embed, sincos_position_table(module.grid_size, module.pos_embed.shape[1]))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, original_weights: str = "ema", **kwargs):
        r"""
        Load from our HF layout (`config.json` + safetensors) or from the ORIGINAL release layout (`llm_config.json`,
        `vit_config.json`, `ema.safetensors`, ...), a local folder or a Hub repo id. The original layout is recognised
        by its files before any `config.json` is read, and is loaded without a second copy of the weights.

        original_weights (`str`, *optional*, defaults to `"ema"`):
            Original layout only: `"ema"` reads `ema.safetensors` (the released weights), `"model"` reads
            `model.safetensors` (the raw, non-EMA training weights) when present.
        """
        original = None
        if cls.config_class is UniMedVLConfig and kwargs.get("config") is None:
            check_checkpoint_folder(os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder") or ""))
            original = resolve_original_checkpoint(pretrained_model_name_or_path, **kwargs)
        if original is None:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        config = UniMedVLConfig.from_original(original, original_weights)
        with staged_original_checkpoint(original, config, original_weights) as staging:
            model = super().from_pretrained(staging, *model_args, key_mapping=ORIGINAL_KEY_MAPPING, **kwargs)
        model.name_or_path = model.config.name_or_path = str(pretrained_model_name_or_path)
        # transformers would otherwise undo the key mapping on `save_pretrained`; our layout uses our own names.
        model._weight_conversions = None
        return model


# ---------------------------------------------------------------------------------------------------------------------
# Vision tower
# ---------------------------------------------------------------------------------------------------------------------


class UniMedVLVisionEmbeddings(nn.Module):
    """NaViT patch embedding: a linear map of each flattened patch plus the learned position of its grid cell.

    The patch embedding is a Linear over the patch flattened as (row in patch, column in patch, channel), which is how
    the release stores it (a Conv2d with its kernel permuted)."""

    def __init__(self, config: UniMedVLVisionConfig):
        super().__init__()
        self.patch_embedding = nn.Linear(config.num_channels * config.patch_size**2, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_num_patches_per_side**2, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        # The position table's dtype is the compute dtype, also when a quantiser packs the patch embedding's weight.
        patches = self.patch_embedding(pixel_values.to(self.position_embedding.weight.dtype))
        return patches + self.position_embedding(position_ids)


class UniMedVLVisionModel(UniMedVLPreTrainedModel):
    """SigLIP encoder over packed patches of several images of different sizes; attention stays inside each image."""

    config: UniMedVLVisionConfig
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _can_record_outputs = {"hidden_states": SiglipEncoderLayer}

    def __init__(self, config: UniMedVLVisionConfig):
        super().__init__(config)
        self.embeddings = UniMedVLVisionEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, image_grid_hw: torch.Tensor, **kwargs) -> BaseModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(num_patches, num_channels * patch_size**2)`):
            Patches of all images, concatenated image after image, each image row-major.
        image_grid_hw (`torch.LongTensor` of shape `(num_images, 2)`):
            Patch rows and columns of each image.

        Returns `last_hidden_state` of shape `(num_patches, hidden_size)`, after `post_layernorm`.
        """
        position_ids = grid_position_ids(image_grid_hw, self.config.max_num_patches_per_side)
        embeddings = self.embeddings(pixel_values, position_ids)
        lengths = (image_grid_hw[:, 0] * image_grid_hw[:, 1]).tolist()
        per_image = list(embeddings.split(lengths))
        # Images of the same grid run as one batch; no cross-image mask is ever needed.
        by_grid: dict[tuple[int, int], list[int]] = {}
        for index, grid in enumerate(image_grid_hw.tolist()):
            by_grid.setdefault(tuple(grid), []).append(index)
        for indices in by_grid.values():
            encoded = self.encoder(torch.stack([per_image[i] for i in indices]), **kwargs).last_hidden_state
            for row, index in enumerate(indices):
                per_image[index] = encoded[row]
        return BaseModelOutput(last_hidden_state=self.post_layernorm(torch.cat(per_image)))


# ---------------------------------------------------------------------------------------------------------------------
# Language model
# ---------------------------------------------------------------------------------------------------------------------


class UniMedVLTextModel(UniMedVLPreTrainedModel):
    """The Mixture-of-Transformers decoder. Understanding tokens end with `norm`, generation tokens with
    `norm_moe_gen`."""

    config: UniMedVLTextConfig
    input_modalities = ("text",)

    def __init__(self, config: UniMedVLTextConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(
            [UniMedVLMoTDecoderLayer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]
        )
        self.norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.norm_moe_gen = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Qwen2RotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    @torch.no_grad()
    def init_generation_expert_from_understanding(self):
        """Copies every understanding-expert weight onto its `*_moe_gen` twin (norms, attention, MLP, final norm), the
        reference's initialisation of the generation expert before training (`copy_init_moe`)."""
        parameters = dict(self.named_parameters())
        for name, parameter in parameters.items():
            if "_moe_gen" in name:
                parameter.copy_(parameters[name.replace("_moe_gen", "")])

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        gen_token_mask: torch.BoolTensor | None = None,
        block_sequence_ids: torch.LongTensor | None = None,
        sample_ids: torch.LongTensor | None = None,
        noise_token_mask: torch.BoolTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            RoPE positions (one per image block, one per text token); see [`UniMedVLModel.get_position_ids`].
        gen_token_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`, *optional*):
            True for VAE latent tokens, which go through the generation expert. Default: all understanding.
        block_sequence_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Index of the image block each token belongs to (bidirectional attention inside a block) or -1 for text.
        sample_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Training with packed rows: index of the sample each token belongs to; attention never crosses samples.
        noise_token_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Training: tokens of noised target image blocks, which no other block may attend to.
        attention_mask (`torch.Tensor` or `dict`):
            2-D padding mask over cached + new tokens, or a ready 4-D mask (used as is), or `{"full_attention": mask}`
            as `generate` prepares it for a static cache.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past_length = cache.get_seq_length() if cache is not None else 0
        batch, seq = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + seq, device=inputs_embeds.device).expand(batch, -1)
        if isinstance(attention_mask, dict):
            # Masks made ahead by `generate` for a static cache, keyed by layer type (all layers are full attention).
            attention_mask = attention_mask["full_attention"]
        if attention_mask is None:
            # An explicit mask keeps transformers from reading our shared image positions as packed sequences.
            attention_mask = torch.ones(batch, past_length + seq, dtype=torch.long, device=inputs_embeds.device)
        if attention_mask.ndim == 2:
            if block_sequence_ids is not None and past_length:
                past_blocks = block_sequence_ids.new_full((batch, past_length), -1)
                block_sequence_ids = torch.cat([past_blocks, block_sequence_ids], dim=1)
            attention_mask = create_causal_mask(
                config=self.config,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                cache=cache,
                and_mask_function=packed_training_mask_function(sample_ids, noise_token_mask),
                block_sequence_ids=block_sequence_ids,
            )

        routing = ExpertRouting(gen_token_mask)
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for decoder_layer in self.layers:
            hidden_states = decoder_layer(
                hidden_states,
                routing,
                attention_mask=attention_mask,
                position_embeddings=position_embeddings,
                cache=cache,
                **kwargs,
            )
        hidden_states = routing(hidden_states, self.norm, self.norm_moe_gen)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, cache=cache if use_cache else None)


# ---------------------------------------------------------------------------------------------------------------------
# Full model
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class UniMedVLModelOutputWithPast(BaseModelOutputWithPast):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
        Final hidden states, normed by the expert of each token.
    cache (`Cache`, *optional*):
        Key/value cache of both experts.
    """


@dataclass
class UniMedVLCausalLMOutputWithPast(ModelOutput):
    r"""
    loss (`torch.FloatTensor`, *optional*):
        `loss_ce + loss_mse` over the terms that apply (weight them yourself for other mixes).
    loss_ce (`torch.FloatTensor`, *optional*):
        Next-token cross entropy, averaged over supervised tokens, when `labels` are given.
    loss_mse (`torch.FloatTensor`, *optional*):
        Flow-matching loss when `latent_loss_mask` selects target images: squared error between `llm2vae` and
        `noise - x0`, averaged over the 64 values of a token, then over target tokens.
    logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`):
        `lm_head` scores (only the positions kept by `logits_to_keep`).
    latent_velocity (`torch.FloatTensor` of shape `(num_noised_tokens, patch_latent_dim)`, *optional*):
        Flow-matching velocity (`llm2vae`) of the tokens of every latent image with a timestep > 0, in input order
        (image generation; clean conditioning images at t = 0 have none). Not computed with `latent_loss_mask`.
    cache (`Cache`, *optional*):
        Key/value cache, for decoding.
    hidden_states / attentions (`tuple(torch.FloatTensor)`, *optional*):
        Per-layer outputs when requested.
    """

    loss: torch.FloatTensor | None = None
    loss_ce: torch.FloatTensor | None = None
    loss_mse: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    latent_velocity: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class UniMedVLModel(UniMedVLPreTrainedModel):
    """Decoder + vision tower + the glue that turns ViT patches and VAE latents into decoder tokens."""

    def __init__(self, config: UniMedVLConfig):
        super().__init__(config)
        hidden_size = config.text_config.hidden_size
        self.language_model = UniMedVLTextModel(config.text_config)
        self.vision_model = UniMedVLVisionModel(config.vision_config)
        self.connector = UniMedVLConnector(config)
        self.vit_pos_embed = UniMedVLPositionTable(config.vision_config.max_num_patches_per_side, hidden_size)
        self.time_embedder = UniMedVLTimestepEmbedder(config.timestep_embed_dim, hidden_size)
        self.vae2llm = nn.Linear(config.patch_latent_dim, hidden_size)
        self.llm2vae = nn.Linear(hidden_size, config.patch_latent_dim)
        self.latent_pos_embed = UniMedVLPositionTable(config.max_latent_size, hidden_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    # -- embeddings of the three token kinds ----------------------------------------------------------------------

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_hw: torch.LongTensor) -> torch.Tensor:
        """ViT patches `(num_patches, 3 * 14 * 14)` → decoder tokens `(num_patches, hidden_size)`:
        SigLIP → connector → + fixed 2-D sin-cos table of the patch grid."""
        features = self.vision_model(pixel_values, image_grid_hw).last_hidden_state
        position_ids = grid_position_ids(image_grid_hw, self.vit_pos_embed.grid_size)
        return self.connector(features) + self.vit_pos_embed(position_ids)

    def get_latent_embeddings(
        self, latents: torch.Tensor, latent_grid_hw: torch.LongTensor, latent_timesteps: torch.Tensor
    ) -> torch.Tensor:
        """Packed latent tokens `(num_tokens, patch_latent_dim)` → decoder tokens `(num_tokens, hidden_size)`:
        vae2llm(x) + timestep MLP(t) + fixed 2-D sin-cos table of the latent grid.

        Args:
            latents: tokens of all latent images, image after image, each row-major, values ordered (p, q, c).
            latent_grid_hw: `(num_latent_images, 2)` token rows and columns of each latent image.
            latent_timesteps: `(num_latent_images,)` flow time of each image (0 = clean conditioning, 1 = noise).
        """
        lengths = latent_grid_hw[:, 0] * latent_grid_hw[:, 1]
        per_token_t = latent_timesteps.to(latents.device).repeat_interleave(lengths.to(latents.device))
        position_ids = grid_position_ids(latent_grid_hw, self.latent_pos_embed.grid_size)
        latents = latents.to(self.vae2llm.bias.dtype)  # not the weight's: a quantised weight is int8 / uint8
        return self.vae2llm(latents) + self.time_embedder(per_token_t) + self.latent_pos_embed(position_ids)

    def get_position_ids(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """RoPE positions from token ids: text tokens count one each, an image block (`<|vision_start|>` … `<|vision_end|>`,
        markers included) shares one position. Left padding is skipped (pads get position 0).

        Returns:
            `(batch_size, sequence_length)` long tensor.
        """
        config = self.config
        is_start = input_ids == config.vision_start_token_id
        is_end = input_ids == config.vision_end_token_id
        inside_image = (is_start.long().cumsum(-1) - is_end.long().cumsum(-1) + is_end.long()) > 0
        step = torch.where(inside_image, is_end.long(), torch.ones_like(input_ids))
        if attention_mask is not None:
            step = step * attention_mask.long()
        return step.cumsum(-1) - step

    def get_block_sequence_ids(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Image-block index of every token (-1 for text), for bidirectional attention inside each image block."""
        is_start = input_ids == self.config.vision_start_token_id
        is_end = input_ids == self.config.vision_end_token_id
        block_index = is_start.long().cumsum(-1) - 1
        inside_image = (is_start.long().cumsum(-1) - is_end.long().cumsum(-1) + is_end.long()) > 0
        return torch.where(inside_image, block_index, torch.full_like(block_index, -1))

    @staticmethod
    def _follows_cached_tokens(past_length: int | torch.Tensor, attention_mask) -> bool:
        """Whether the new tokens continue a non-empty cache. A static cache counts its tokens on the device, and
        reading that count on every decoding step would stall a GPU and split a compiled graph; but `generate` hands
        over ready-made masks (a dict) on exactly those steps (see `create_masks_for_generate`)."""
        return isinstance(attention_mask, dict) or bool(past_length)

    def _check_context_length(self, position_ids: torch.LongTensor) -> None:
        """Refuse RoPE positions the decoder was not trained for, instead of silently degrading.

        Skipped inside `torch.compile`, where reading the positions on the host would split the graph: `generate` only
        compiles the decoding steps of a static cache, after an eager prefill that checked the prompt."""
        if torch.compiler.is_compiling():
            return
        limit = self.config.text_config.max_position_embeddings
        last = int(position_ids.max()) if position_ids.numel() else -1
        if last >= limit:
            raise ValueError(
                f"The input needs RoPE position {last}, beyond the model's context "
                f"(`text_config.max_position_embeddings`={limit}; text tokens take one position each, every image "
                "block one). Shorten the prompt or lower `max_new_tokens`."
            )

    def _check_placeholders(self, input_ids, token_id, num_values, what, argument):
        count = int((input_ids == token_id).sum())
        if count != num_values:
            raise ValueError(
                f"`input_ids` hold {count} {what} placeholder tokens but `{argument}` provides {num_values} tokens; "
                "build inputs with `UniMedVLProcessor` so both agree."
            )

    def embed_inputs(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.Tensor | None = None,
        image_grid_hw: torch.LongTensor | None = None,
        latents: torch.Tensor | None = None,
        latent_grid_hw: torch.LongTensor | None = None,
        latent_timesteps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with ViT features and latent embeddings scattered into their placeholder positions."""
        embeds = self.get_input_embeddings()(input_ids)
        image_mask = input_ids == self.config.image_token_id
        num_image_tokens = 0 if pixel_values is None else pixel_values.shape[0]
        self._check_placeholders(input_ids, self.config.image_token_id, num_image_tokens, "image", "pixel_values")
        if num_image_tokens:
            features = self.get_image_features(pixel_values, image_grid_hw).to(embeds.dtype)
            embeds = embeds.masked_scatter(image_mask.unsqueeze(-1), features)
        latent_mask = input_ids == self.config.latent_token_id
        num_latent_tokens = 0 if latents is None else latents.shape[0]
        self._check_placeholders(input_ids, self.config.latent_token_id, num_latent_tokens, "latent", "latents")
        if num_latent_tokens:
            latent_embeds = self.get_latent_embeddings(latents, latent_grid_hw, latent_timesteps).to(embeds.dtype)
            embeds = embeds.masked_scatter(latent_mask.unsqueeze(-1), latent_embeds)
        return embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_hw: torch.LongTensor | None = None,
        latents: torch.Tensor | None = None,
        latent_grid_hw: torch.LongTensor | None = None,
        latent_timesteps: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        sample_ids: torch.LongTensor | None = None,
        noise_token_mask: torch.BoolTensor | None = None,
        **kwargs,
    ) -> UniMedVLModelOutputWithPast:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Token ids with one `<|image_pad|>` per ViT patch and one `<|vision_pad|>` per latent token.
        pixel_values (`torch.FloatTensor` of shape `(num_patches, 3 * patch_size**2)`, *optional*):
            ViT patches of every image of the batch, in order of appearance.
        image_grid_hw (`torch.LongTensor` of shape `(num_images, 2)`, *optional*):
            Patch grid of each image.
        latents (`torch.FloatTensor` of shape `(num_latent_tokens, patch_latent_dim)`, *optional*):
            Packed (already scaled) VAE latent tokens of every latent image of the batch, in order of appearance.
        latent_grid_hw (`torch.LongTensor` of shape `(num_latent_images, 2)`, *optional*):
            Token grid of each latent image.
        latent_timesteps (`torch.FloatTensor` of shape `(num_latent_images,)`, *optional*):
            Flow time of each latent image (0 for clean conditioning images). Defaults to zeros.
        position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            RoPE positions. Computed from `input_ids` when omitted; required when continuing from a non-empty `cache`.
        sample_ids, noise_token_mask:
            Packed-training attention rules, see [`UniMedVLTextModel.forward`].
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        past_length = cache.get_seq_length() if cache is not None else 0
        gen_token_mask = block_sequence_ids = None
        if input_ids is not None:
            if position_ids is None:
                if past_length:
                    raise ValueError(
                        "`position_ids` are required when continuing from a non-empty `cache`: image blocks share one "
                        "position, so they cannot be inferred from the new tokens alone. Use "
                        "`model.get_position_ids(full_input_ids, full_attention_mask)[:, -new_length:]`."
                    )
                padding = attention_mask if attention_mask is not None and attention_mask.ndim == 2 else None
                position_ids = self.get_position_ids(input_ids, padding)
            self._check_context_length(position_ids)  # before the vision tower runs
            if pixel_values is None and latents is None and self._follows_cached_tokens(past_length, attention_mask):
                # Decoding after a prefix: new tokens are plain text whatever their id (as in the release, which
                # embeds any sampled token, placeholder ids included, with the understanding expert).
                inputs_embeds = self.get_input_embeddings()(input_ids)
            else:
                if latents is not None and latent_timesteps is None:
                    latent_timesteps = latents.new_zeros(latent_grid_hw.shape[0])
                inputs_embeds = self.embed_inputs(
                    input_ids, pixel_values, image_grid_hw, latents, latent_grid_hw, latent_timesteps
                )
                gen_token_mask = input_ids == self.config.latent_token_id
                block_sequence_ids = self.get_block_sequence_ids(input_ids)
        elif position_ids is not None:
            self._check_context_length(position_ids)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            gen_token_mask=gen_token_mask,
            block_sequence_ids=block_sequence_ids,
            sample_ids=sample_ids,
            noise_token_mask=noise_token_mask,
            **kwargs,
        )
        return UniMedVLModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class UniMedVLForConditionalGeneration(UniMedVLPreTrainedModel, GenerationMixin):
    """UniMedVL with its `lm_head`: `generate()` answers questions about medical images and writes reports; the
    generation heads (`model.llm2vae`, …) are driven by `UniMedVLPipeline` for image generation."""

    _tied_weights_keys = {}

    def __init__(self, config: UniMedVLConfig):
        super().__init__(config)
        self.model = UniMedVLModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_hw: torch.LongTensor | None = None,
        latents: torch.Tensor | None = None,
        latent_grid_hw: torch.LongTensor | None = None,
        latent_timesteps: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        latent_loss_mask: torch.BoolTensor | None = None,
        latent_noise: torch.Tensor | None = None,
        sample_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> UniMedVLCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Target ids for the next-token loss (-100 = ignored), aligned with `input_ids` (shifted inside). Only the
            supervised positions go through `lm_head` for the loss.
        logits_to_keep (`int` or `torch.Tensor`, *optional*):
            Return logits only for the last `logits_to_keep` positions (0 = all), or for the given indices.
        latent_loss_mask (`torch.BoolTensor` of shape `(num_latent_images,)`, *optional*):
            Training: latent images that are flow-matching targets. Their `latents` are the clean `x0`; they are noised
            to `x_t = (1 - t) * x0 + t * noise` with their `latent_timesteps` t, other blocks cannot attend to them,
            and `loss_mse` compares `llm2vae` with `noise - x0`.
        latent_noise (`torch.FloatTensor` of shape `(num_target_tokens, patch_latent_dim)`, *optional*):
            The noise of the target tokens; drawn with `torch.randn_like` when omitted.
        sample_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Packed training rows: attention never crosses samples.
        """
        noise_token_mask = flow_target = target_tokens = None
        if latent_loss_mask is not None:
            latents, flow_target, target_tokens = self._noise_target_latents(
                latents, latent_grid_hw, latent_timesteps, latent_loss_mask, latent_noise
            )
            noise_token_mask = self._noise_token_mask(input_ids, target_tokens)

        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            image_grid_hw=image_grid_hw,
            latents=latents,
            latent_grid_hw=latent_grid_hw,
            latent_timesteps=latent_timesteps,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            sample_ids=sample_ids,
            noise_token_mask=noise_token_mask,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])

        loss_ce = loss_mse = latent_velocity = None
        if labels is not None:
            loss_ce = self._cross_entropy(hidden_states, labels, kwargs.get("num_items_in_batch"))
        if latents is not None and input_ids is not None:
            latent_hidden = hidden_states[input_ids == self.config.latent_token_id]
            if flow_target is not None:
                predicted_velocity = self.model.llm2vae(latent_hidden[target_tokens])
                loss_mse = ((predicted_velocity.float() - flow_target.float()) ** 2).mean(-1).mean()
            elif latent_timesteps is not None and bool((latent_timesteps > 0).any()):
                tokens_per_image = latent_grid_hw[:, 0] * latent_grid_hw[:, 1]
                noised = (latent_timesteps > 0).to(tokens_per_image.device).repeat_interleave(tokens_per_image)
                latent_velocity = self.model.llm2vae(latent_hidden[noised.to(latent_hidden.device)])
        terms = [term for term in (loss_ce, loss_mse) if term is not None]
        return UniMedVLCausalLMOutputWithPast(
            loss=sum(terms) if terms else None,
            loss_ce=loss_ce,
            loss_mse=loss_mse,
            logits=logits,
            latent_velocity=latent_velocity,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def _cross_entropy(self, hidden_states, labels, num_items_in_batch=None) -> torch.Tensor:
        """Next-token cross entropy computed on supervised positions only (no full-vocabulary logits for the rest)."""
        shift_labels = nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
        supervised = shift_labels != -100
        logits = self.lm_head(hidden_states[supervised]).float()
        total = nn.functional.cross_entropy(logits, shift_labels[supervised], reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else supervised.sum().clamp(min=1)
        return total / count

    def _noise_target_latents(self, latents, latent_grid_hw, latent_timesteps, latent_loss_mask, latent_noise):
        """Rectified-flow noising of the target images: returns (latents with targets noised, velocity target
        `noise - x0` of the target tokens, boolean mask of target tokens among all latent tokens)."""
        if latents is None or latent_timesteps is None:
            raise ValueError("`latent_loss_mask` needs `latents` (clean x0) and `latent_timesteps` (t of each image).")
        tokens_per_image = (latent_grid_hw[:, 0] * latent_grid_hw[:, 1]).to(latents.device)
        target_tokens = latent_loss_mask.to(latents.device).repeat_interleave(tokens_per_image)
        t = latent_timesteps.to(latents.device, latents.dtype).repeat_interleave(tokens_per_image)[target_tokens]
        clean = latents[target_tokens]
        noise = torch.randn_like(clean) if latent_noise is None else latent_noise.to(clean)
        if noise.shape != clean.shape:
            raise ValueError(f"`latent_noise` must have shape {tuple(clean.shape)}, got {tuple(noise.shape)}.")
        noised = (1 - t).unsqueeze(1) * clean + t.unsqueeze(1) * noise
        latents = latents.masked_scatter(target_tokens.unsqueeze(1), noised)
        return latents, noise - clean, target_tokens

    def _noise_token_mask(self, input_ids, target_tokens) -> torch.BoolTensor:
        """Every token of a noised image block (its latent tokens and its two markers)."""
        token_is_target = torch.zeros_like(input_ids, dtype=torch.bool)
        token_is_target[input_ids == self.config.latent_token_id] = target_tokens
        block_ids = self.model.get_block_sequence_ids(input_ids) + 1  # 0 = text
        block_is_target = torch.zeros(
            input_ids.shape[0], int(block_ids.max()) + 1, dtype=torch.bool, device=input_ids.device
        ).scatter_reduce(1, block_ids, token_is_target, reduce="amax")
        block_is_target[:, 0] = False
        return block_is_target.gather(1, block_ids)

    # -- generate() integration -----------------------------------------------------------------------------------

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        input_ids = model_kwargs.get("input_ids", inputs_tensor)
        if input_ids is None or input_ids.ndim != 2 or input_ids.dtype not in (torch.int, torch.long):
            return super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)
        cache = model_kwargs.get("cache")
        if cache is not None and cache.get_seq_length() > 0:
            raise ValueError(
                "Continuing `generate` from a non-empty `cache` needs explicit `position_ids` for the full sequence "
                "(see `model.model.get_position_ids`)."
            )
        return self.model.get_position_ids(input_ids, model_kwargs.get("attention_mask"))

    def create_masks_for_generate(
        self, config, inputs_embeds, attention_mask, cache, is_first_iteration: bool = False, **kwargs
    ):
        # `generate` builds the masks of a static cache ahead of the forward, from the padding mask alone. The prefill
        # keeps its 2-D mask: the forward makes it bidirectional inside each image block, which needs the token ids.
        # Later steps only add text tokens, for which the plain causal mask is exact.
        if is_first_iteration:
            return attention_mask
        return create_masks_for_generate(config, inputs_embeds, attention_mask, cache, **kwargs)

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and model_inputs.get("cache") is not None:
            # Latent conditioning images live in the cache after the prefill, like `pixel_values`.
            for key in ("latents", "latent_grid_hw", "latent_timesteps"):
                model_inputs.pop(key, None)
        return model_inputs

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        # `pixel_values` / `image_grid_hw` are packed over images, not batch-major: repeat each sample's own images.
        if expand_size == 1:
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        pixel_values = model_kwargs.pop("pixel_values", None)
        image_grid_hw = model_kwargs.pop("image_grid_hw", None)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        if pixel_values is not None:
            originals = input_ids[::expand_size]
            image_starts = (originals[:, :-1] == self.config.vision_start_token_id) & (
                originals[:, 1:] == self.config.image_token_id
            )
            images_per_sample = image_starts.sum(-1).tolist()
            grids = image_grid_hw.split(images_per_sample)
            patches = pixel_values.split([int((g[:, 0] * g[:, 1]).sum()) for g in grids])
            model_kwargs["image_grid_hw"] = torch.cat([g for g in grids for _ in range(expand_size)])
            model_kwargs["pixel_values"] = torch.cat([p for p in patches for _ in range(expand_size)])
        return input_ids, model_kwargs


__all__ = [
    "UniMedVLForConditionalGeneration",
    "UniMedVLModel",
    "UniMedVLPreTrainedModel",
    "UniMedVLTextModel",
    "UniMedVLVisionModel",
]
