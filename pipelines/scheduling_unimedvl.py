# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The UniMedVL (BAGEL) flow-matching sampler as a configured diffusers `FlowMatchEulerDiscreteScheduler`.

Convention: t = 1 is noise, t = 0 is data, x_t = (1 - t) * x_0 + t * noise, and the model predicts
v = noise - x_0. The original sampler runs on the grid u = linspace(1, 0, N), shifted by
t = s * u / (1 + (s - 1) * u), with N - 1 Euler steps x <- x - v(x, t_i) * (t_i - t_{i+1}).

With `shift=s` and `set_timesteps(sigmas=u[:-1])`, the scheduler's `sigmas` are exactly those t_i (plus a final 0)
and `step` is exactly that Euler update. Two details matter for bit-exact parity:

- `num_inference_steps` counts model calls: the original's `num_timesteps=N` is `num_inference_steps=N - 1`;
- the grid must be `torch.linspace` in float32 as in the original; `np.linspace(...).astype(np.float32)` differs by
  one ulp for many N (including N = 8).

`scheduler.timesteps` are 1000 * sigma (diffusers' convention, used to index `step`). **The model's time embedder
must be fed the sigma itself**, `scheduler.sigmas[i]` (t in [0, 1]), not `timesteps[i]` nor `timesteps[i] / 1000`
(which need not round-trip exactly).
"""

import math

import torch
from diffusers import FlowMatchEulerDiscreteScheduler


DEFAULT_TIMESTEP_SHIFT = 3.0

# Scheduler options that would move the sigmas away from the reference schedule or make `step` stochastic.
_INCOMPATIBLE_OPTIONS = (
    "use_dynamic_shifting",
    "shift_terminal",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "invert_sigmas",
    "stochastic_sampling",
)


def _check_num_inference_steps(num_inference_steps: int) -> None:
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}")


def _check_timestep_shift(timestep_shift: float) -> None:
    if isinstance(timestep_shift, bool) or not isinstance(timestep_shift, (int, float)):
        raise ValueError(f"`timestep_shift` must be a number > 0, got {timestep_shift!r}")
    if not (math.isfinite(timestep_shift) and timestep_shift > 0):
        raise ValueError(f"`timestep_shift` must be a finite number > 0, got {timestep_shift!r}")


def reference_timesteps(num_inference_steps: int, timestep_shift: float) -> torch.Tensor:
    """
    The shifted times the original sampler feeds the model, computed the way it does (plain torch, float32, CPU).

    Args:
        num_inference_steps (`int`): number of model calls (the original's `num_timesteps` minus one).
        timestep_shift (`float`): the shift s (3.0 in every release script).

    Returns:
        `torch.Tensor` of shape `(num_inference_steps,)`, float32: t_0 = 1 (noise) down to the last t before 0.
    """
    _check_num_inference_steps(num_inference_steps)
    _check_timestep_shift(timestep_shift)
    grid = torch.linspace(1, 0, num_inference_steps + 1)
    shifted = timestep_shift * grid / (1 + (timestep_shift - 1) * grid)
    return shifted[:-1]


def build_flow_match_scheduler(timestep_shift: float = DEFAULT_TIMESTEP_SHIFT) -> FlowMatchEulerDiscreteScheduler:
    """
    A `FlowMatchEulerDiscreteScheduler` with the reference's static shift. Call [`set_reference_timesteps`] before
    sampling: its default `set_timesteps(n)` grid is not the reference one.

    Args:
        timestep_shift (`float`, *optional*, defaults to 3.0): the shift s.

    Returns:
        `FlowMatchEulerDiscreteScheduler`
    """
    _check_timestep_shift(timestep_shift)
    return FlowMatchEulerDiscreteScheduler(shift=float(timestep_shift), use_dynamic_shifting=False)


def set_reference_timesteps(
    scheduler: FlowMatchEulerDiscreteScheduler,
    num_inference_steps: int,
    timestep_shift: float | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """
    Sets the reference schedule on `scheduler`: afterwards `scheduler.sigmas[:-1]` equals
    `reference_timesteps(num_inference_steps, shift)` bit for bit and `scheduler.sigmas[-1]` is 0.

    Args:
        scheduler (`FlowMatchEulerDiscreteScheduler`): modified in place.
        num_inference_steps (`int`): number of model calls (the original's `num_timesteps` minus one).
        timestep_shift (`float`, *optional*): new shift, also written to the scheduler config; keeps the current one
            when omitted.
        device (`str` or `torch.device`, *optional*): where to put `sigmas` and `timesteps`.

    Returns:
        `torch.Tensor` of shape `(num_inference_steps,)`: `scheduler.timesteps` (= 1000 * sigma), the values to pass
        to `scheduler.step`. Feed the model `scheduler.sigmas[i]`, not these.

    Raises:
        `ValueError`: for `num_inference_steps < 1`, a non-positive shift, or a scheduler config whose options
            (dynamic shifting, Karras/exponential/beta sigmas, ...) change the schedule.
    """
    _check_num_inference_steps(num_inference_steps)
    enabled = [name for name in _INCOMPATIBLE_OPTIONS if scheduler.config.get(name)]
    if enabled:
        raise ValueError(f"Scheduler options {enabled} change the reference flow-matching schedule; disable them")
    if timestep_shift is not None:
        _check_timestep_shift(timestep_shift)
        # `set_timesteps` reads `scheduler.shift`; the config entry keeps `save_pretrained` consistent with it.
        scheduler.register_to_config(shift=float(timestep_shift))
        scheduler.set_shift(float(timestep_shift))

    # The scheduler shifts the grid itself and appends the final 0; the grid must be torch's float32 linspace.
    grid = torch.linspace(1, 0, num_inference_steps + 1)[:-1]
    scheduler.set_timesteps(sigmas=grid.numpy(), device=device)
    return scheduler.timesteps
