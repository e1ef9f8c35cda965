# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Configuration of UniMedVL: a Qwen2 Mixture-of-Transformers decoder, a SigLIP NaViT vision tower and the latent
flow-matching generation heads of BAGEL.

The original release keeps half of its settings in code (q/k norm, untied head, ViT depth, latent table size, VAE
constants). Here every one of them is a documented field, so that `config.json` alone describes the model.
"""

from transformers import PreTrainedConfig, Qwen2Config, SiglipVisionConfig

from .original_checkpoint import original_config_kwargs


class UniMedVLTextConfig(Qwen2Config):
    r"""
    The Qwen2.5 decoder turned into a Mixture-of-Transformers: every layer holds an *understanding* expert (text and
    ViT tokens) and a *generation* expert (VAE latent tokens, weight names ending in `_moe_gen`) that share one
    self-attention. Defaults are the released 7B-active / 14B-total model.

    Args:
        vocab_size (`int`, *optional*, defaults to 152064):
            Rows of the token embedding and of `lm_head` (larger than the tokenizer; extra rows are never produced).
        hidden_size (`int`, *optional*, defaults to 3584):
            Width of the residual stream, shared by both experts.
        intermediate_size (`int`, *optional*, defaults to 18944):
            Width of each expert's SwiGLU MLP.
        num_hidden_layers (`int`, *optional*, defaults to 28):
            Number of MoT decoder layers.
        num_attention_heads (`int`, *optional*, defaults to 28):
            Query heads per layer.
        num_key_value_heads (`int`, *optional*, defaults to 4):
            Key/value heads per layer (grouped-query attention).
        hidden_act (`str`, *optional*, defaults to `"silu"`):
            Activation of the SwiGLU gate.
        max_position_embeddings (`int`, *optional*, defaults to 32768):
            Largest RoPE position the model was trained for. An image block uses a single position whatever its
            number of tokens, so this bounds text length plus number of images.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser for freshly created weights.
        rms_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of every RMSNorm (layer norms and per-head q/k norms).
        use_cache (`bool`, *optional*, defaults to `True`):
            Whether `forward` returns the key/value cache.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            The release has its own `lm_head`; keep `False`.
        rope_parameters (`dict`, *optional*):
            RoPE settings; the release uses default RoPE with `rope_theta=1e6` and no scaling.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities during training.
        qk_norm (`bool`, *optional*, defaults to `True`):
            Per-head RMSNorm over `head_dim` on queries and keys, before RoPE (forced on by the release loaders).
        use_sliding_window (`bool`, *optional*, defaults to `False`):
            Inherited from Qwen2; UniMedVL never uses sliding-window attention.
        pad_token_id / bos_token_id / eos_token_id (`int`, *optional*):
            `<|endoftext|>`, `<|im_start|>` and `<|im_end|>` of the tokenizer.
    """

    model_type = "unimedvl_text"
    base_config_key = "text_config"

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int | None = 4
    max_window_layers: int = 28
    qk_norm: bool = True

    def __post_init__(self, **kwargs):
        if self.rope_parameters is None and "rope_theta" not in kwargs:
            kwargs["rope_theta"] = 1e6
        super().__post_init__(**kwargs)


class UniMedVLVisionConfig(SiglipVisionConfig):
    r"""
    The SigLIP so400m/14 vision tower used as a NaViT: images keep their aspect ratio, each is cut into 14×14 patches
    and every patch gets the learned position embedding of its (row, col) in a `image_size/patch_size` square table.
    The release's `vit_config.json` says 27 layers, but the released model runs 26 and then `post_layernorm`.

    Args:
        hidden_size (`int`, *optional*, defaults to 1152):
            Width of the vision transformer.
        intermediate_size (`int`, *optional*, defaults to 4304):
            Width of its MLP.
        num_hidden_layers (`int`, *optional*, defaults to 26):
            Layers actually run (and stored). Conversion infers it from the checkpoint.
        num_attention_heads (`int`, *optional*, defaults to 16):
            Attention heads (bidirectional, within one image).
        num_channels (`int`, *optional*, defaults to 3):
            Input channels.
        image_size (`int`, *optional*, defaults to 980):
            Side of the largest square image the position table covers: `(image_size / patch_size) ** 2` learned
            positions (70 × 70 for the release).
        patch_size (`int`, *optional*, defaults to 14):
            Side of a square patch in pixels.
        hidden_act (`str`, *optional*, defaults to `"gelu_pytorch_tanh"`):
            MLP activation.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities during training.
    """

    model_type = "unimedvl_vision"
    base_config_key = "vision_config"

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 26
    num_attention_heads: int = 16
    image_size: int | list[int] | tuple[int, int] = 980
    patch_size: int | list[int] | tuple[int, int] = 14
    vision_use_head: bool | None = False

    @property
    def max_num_patches_per_side(self) -> int:
        """Side of the square learned position table (70 for the release)."""
        return self.image_size // self.patch_size


class UniMedVLConfig(PreTrainedConfig):
    r"""
    Configuration of [`UniMedVLForConditionalGeneration`]: understanding (image → text) and generation (text/image →
    image, through the latent flow-matching heads and an external FLUX-style VAE).

    Args:
        text_config (`dict` or [`UniMedVLTextConfig`], *optional*):
            The Mixture-of-Transformers decoder.
        vision_config (`dict` or [`UniMedVLVisionConfig`], *optional*):
            The SigLIP NaViT vision tower.
        connector_act (`str`, *optional*, defaults to `"gelu_pytorch_tanh"`):
            Activation between the two linear layers that map ViT features into the decoder width.
        latent_channels (`int`, *optional*, defaults to 16):
            Channels of the VAE latent.
        vae_downsample (`int`, *optional*, defaults to 8):
            Spatial downsampling of the VAE (pixels per latent cell).
        latent_patch_size (`int`, *optional*, defaults to 2):
            Side of the square of latent cells packed into one decoder token, so one token covers
            `vae_downsample * latent_patch_size` = 16 pixels and carries `latent_patch_size**2 * latent_channels` = 64
            values, ordered (row in patch, column in patch, channel).
        max_latent_size (`int`, *optional*, defaults to 64):
            Side of the square 2-D sin-cos table of latent-token positions, so the largest image side is
            `max_latent_size * 16` = 1024 pixels. (BAGEL's class default of 32 is wrong for the release.)
        timestep_embed_dim (`int`, *optional*, defaults to 256):
            Size of the sinusoidal timestep features fed to the timestep MLP (t in [0, 1], not scaled by 1000).
        timestep_shift (`float`, *optional*, defaults to 1.0):
            Shift s applied to training timesteps, t ← s·t / (1 + (s − 1)·t). Inference uses the pipeline's own
            `timestep_shift` (3.0 in the release scripts).
        vae_scaling_factor (`float`, *optional*, defaults to 0.3611):
            VAE latents enter the model as `vae_scaling_factor * (z - vae_shift_factor)`.
        vae_shift_factor (`float`, *optional*, defaults to 0.1159):
            See `vae_scaling_factor`.
        image_token_id (`int`, *optional*, defaults to 151655):
            `<|image_pad|>`, the placeholder the processor repeats once per ViT patch.
        latent_token_id (`int`, *optional*, defaults to 151654):
            `<|vision_pad|>`, the placeholder repeated once per VAE latent token (conditioning or generated image).
        vision_start_token_id (`int`, *optional*, defaults to 151652):
            `<|vision_start|>`, opens every image block (ViT, VAE or generated).
        vision_end_token_id (`int`, *optional*, defaults to 151653):
            `<|vision_end|>`, closes every image block.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            `lm_head` is not tied to the input embedding.
    """

    model_type = "unimedvl"
    sub_configs_defaults = {"text_config": UniMedVLTextConfig, "vision_config": UniMedVLVisionConfig}

    text_config: dict | UniMedVLTextConfig | None = None
    vision_config: dict | UniMedVLVisionConfig | None = None
    connector_act: str = "gelu_pytorch_tanh"
    latent_channels: int = 16
    vae_downsample: int = 8
    latent_patch_size: int = 2
    max_latent_size: int = 64
    timestep_embed_dim: int = 256
    timestep_shift: float = 1.0
    vae_scaling_factor: float = 0.3611
    vae_shift_factor: float = 0.1159
    image_token_id: int = 151655
    latent_token_id: int = 151654
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False

    @classmethod
    def from_original(cls, folder, weights: str = "ema") -> "UniMedVLConfig":
        """The config of an ORIGINAL release folder (`llm_config.json`, `vit_config.json`, `ema.safetensors`, tokenizer
        files), with the settings the release keeps in code made explicit and sizes read from tensor shapes."""
        return cls(**original_config_kwargs(folder, weights))

    @property
    def latent_downsample(self) -> int:
        """Pixels per side covered by one latent token (16 for the release)."""
        return self.vae_downsample * self.latent_patch_size

    @property
    def patch_latent_dim(self) -> int:
        """Values carried by one latent token (64 for the release)."""
        return self.latent_patch_size**2 * self.latent_channels


__all__ = ["UniMedVLConfig", "UniMedVLTextConfig", "UniMedVLVisionConfig"]
