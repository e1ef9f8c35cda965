# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""PEFT LoRA on UniMedVL's Mixture-of-Transformers decoder, per expert.

The understanding expert's projections are `self_attn.{q,k,v,o}_proj` and `mlp.{gate,up,down}_proj` of every decoder
layer; the generation expert's are their `*_moe_gen` twins. (The SigLIP tower also has `q_proj`/`k_proj`/`v_proj`,
which these patterns leave alone.)

```python
from peft import PeftModel
model = apply_lora(model, LoraArguments(r=16, experts=["generation"]))   # train
model.save_pretrained("adapter")                                           # adapter weights only
model = PeftModel.from_pretrained(base_model, "adapter").merge_and_unload()  # plain UniMedVL again
```
"""

from peft import LoraConfig, PeftModel, get_peft_model

from .config import LoraArguments

_LAYER = r"(?:.*\.)?language_model\.layers\.\d+\."
EXPERT_LORA_PATTERNS = {
    "understanding": _LAYER + r"(?:self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)",
    "generation": _LAYER + r"(?:self_attn\.(?:q|k|v|o)_proj_moe_gen|mlp_moe_gen\.(?:gate|up|down)_proj)",
}


def lora_target_modules(experts: list[str] | tuple[str, ...]) -> str:
    """A regex (peft full-matches it against module names) selecting the projections of the given experts."""
    unknown = sorted(set(experts) - set(EXPERT_LORA_PATTERNS))
    if unknown or not experts:
        raise ValueError(f"experts must be a non-empty subset of {sorted(EXPERT_LORA_PATTERNS)}, got {experts}.")
    return "|".join(f"(?:{EXPERT_LORA_PATTERNS[expert]})" for expert in experts)


def apply_lora(model, lora_args: LoraArguments) -> PeftModel:
    """Freezes the model and wraps it with LoRA adapters on the selected experts (only adapters train)."""
    config = LoraConfig(
        r=lora_args.r,
        lora_alpha=lora_args.alpha,
        lora_dropout=lora_args.dropout,
        target_modules=lora_args.target_modules or lora_target_modules(lora_args.experts),
    )
    return get_peft_model(model, config)


__all__ = ["EXPERT_LORA_PATTERNS", "apply_lora", "lora_target_modules"]
