# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Exponential moving average of the trainable weights (the release ships EMA weights as its model).

After every optimizer step, `ema ← decay · ema + (1 − decay) · weight`, with a constant decay as in the reference
trainer. The shadow copies are float32 and live next to the process's own (possibly sharded) parameters, so the same
code serves one process, DDP and FSDP; each process saves its own copies.
"""

from contextlib import contextmanager

import torch
from torch import nn


class ExponentialMovingAverage:
    """Float32 shadow copies of the parameters that require gradients.

    Args:
        model: the (possibly wrapped) model whose `named_parameters()` are averaged.
        decay: the constant decay, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.shadow = {name: p.detach().float().clone() for name, p in self.parameters.items()}

    @torch.no_grad()
    def update(self):
        for name, parameter in self.parameters.items():
            self.shadow[name].lerp_(parameter.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.contiguous() for name, tensor in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        missing = sorted(self.shadow.keys() - state.keys())
        unexpected = sorted(state.keys() - self.shadow.keys())
        if missing or unexpected:
            raise ValueError(f"EMA state does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}.")
        for name, tensor in state.items():
            self.shadow[name].copy_(tensor)

    @contextmanager
    def swapped_in(self):
        """Temporarily puts the EMA weights into the model (e.g. to save or evaluate them)."""
        backup = {name: p.detach().clone() for name, p in self.parameters.items()}
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in self.parameters.items():
                    parameter.copy_(backup[name])


__all__ = ["ExponentialMovingAverage"]
