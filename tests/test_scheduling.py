# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The flow-matching scheduler reproduces the reference sampler's times and Euler updates."""

import pathlib

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from unimedvl.pipelines.scheduling_unimedvl import (
    build_flow_match_scheduler,
    reference_timesteps,
    set_reference_timesteps,
)


FIXTURE_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference_tiny"


@pytest.fixture(scope="module")
def goldens():
    if not (FIXTURE_DIR / "goldens.safetensors").is_file():
        pytest.skip(f"reference fixture not found at {FIXTURE_DIR}")
    from safetensors.torch import load_file

    return load_file(FIXTURE_DIR / "goldens.safetensors")


@pytest.mark.parametrize(
    "num_inference_steps, shift",
    [(1, 3.0), (7, 3.0), (49, 3.0), (50, 3.0), (20, 1.0), (10, 0.5), (30, 1.7), (999, 3.0)],
)
def test_sigmas_equal_reference_bit_exact(num_inference_steps, shift):
    scheduler = build_flow_match_scheduler(shift)
    timesteps = set_reference_timesteps(scheduler, num_inference_steps)
    expected = reference_timesteps(num_inference_steps, shift)

    assert expected.dtype == torch.float32 and expected.shape == (num_inference_steps,)
    assert torch.equal(scheduler.sigmas[:-1], expected)
    assert scheduler.sigmas[-1] == 0
    assert torch.equal(timesteps, expected * 1000)


def test_reference_grid_is_not_numpy_float32_linspace():
    # Why the grid comes from torch.linspace: numpy's float32-rounded float64 linspace is 1 ulp off at N = 8.
    scheduler = build_flow_match_scheduler(3.0)
    scheduler.set_timesteps(sigmas=np.linspace(1, 0, 8)[:-1].astype(np.float32))
    assert not torch.equal(scheduler.sigmas[:-1], reference_timesteps(7, 3.0))


def test_golden_trajectory_times(goldens):
    expected = reference_timesteps(7, 3.0)
    assert torch.equal(expected, goldens["t2i.trajectory_t"])
    assert torch.equal(expected, goldens["edit.trajectory_t"])

    scheduler = build_flow_match_scheduler()
    set_reference_timesteps(scheduler, 7)
    assert torch.equal(scheduler.sigmas[:-1], goldens["t2i.trajectory_t"])


def test_shift_override_updates_config_and_schedule(tmp_path):
    scheduler = build_flow_match_scheduler(1.0)
    set_reference_timesteps(scheduler, 12, timestep_shift=3.0)
    assert scheduler.config.shift == 3.0 and scheduler.shift == 3.0
    assert torch.equal(scheduler.sigmas[:-1], reference_timesteps(12, 3.0))

    scheduler.save_pretrained(tmp_path)
    reloaded = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path)
    set_reference_timesteps(reloaded, 12)
    assert torch.equal(reloaded.sigmas, scheduler.sigmas)


@pytest.mark.parametrize("case", ["t2i", "edit"])
def test_single_euler_steps(goldens, case):
    scheduler = build_flow_match_scheduler(3.0)
    timesteps = set_reference_timesteps(scheduler, 7)
    x, v, t = (goldens[f"{case}.trajectory_{name}"] for name in ("x_t", "v_t", "t"))
    t = torch.cat([t, t.new_zeros(1)])

    for i, timestep in enumerate(timesteps):
        prev_sample = scheduler.step(v[i], timestep, x[i]).prev_sample
        torch.testing.assert_close(prev_sample, x[i] - v[i] * (t[i] - t[i + 1]), rtol=0, atol=1e-7)
        if i + 1 < len(x):
            torch.testing.assert_close(prev_sample, x[i + 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["t2i", "edit"])
def test_full_euler_loop_reproduces_final_latent(goldens, case):
    scheduler = build_flow_match_scheduler(3.0)
    timesteps = set_reference_timesteps(scheduler, 7)
    latents = goldens[f"{case}.trajectory_x_t"][0]
    for i, timestep in enumerate(timesteps):
        latents = scheduler.step(goldens[f"{case}.trajectory_v_t"][i], timestep, latents).prev_sample

    torch.testing.assert_close(latents, goldens[f"{case}.final_latent_packed"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("num_inference_steps", [0, -3, 2.5, True])
def test_invalid_num_inference_steps(num_inference_steps):
    with pytest.raises(ValueError, match="num_inference_steps"):
        set_reference_timesteps(build_flow_match_scheduler(), num_inference_steps)
    with pytest.raises(ValueError, match="num_inference_steps"):
        reference_timesteps(num_inference_steps, 3.0)


@pytest.mark.parametrize("shift", [0.0, -1.0, float("nan"), float("inf"), "3"])
def test_invalid_shift(shift):
    with pytest.raises(ValueError, match="timestep_shift"):
        build_flow_match_scheduler(shift)
    with pytest.raises(ValueError, match="timestep_shift"):
        set_reference_timesteps(build_flow_match_scheduler(), 7, timestep_shift=shift)
    with pytest.raises(ValueError, match="timestep_shift"):
        reference_timesteps(7, shift)


def test_incompatible_scheduler_config_is_rejected():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_karras_sigmas=True)
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        set_reference_timesteps(scheduler, 7)
