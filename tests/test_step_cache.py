"""Step caching (`step_cache=`): off by default and exact when every step runs the model; with caching, fewer model
forwards and images close to the uncached ones on the trained nano model; bad settings fail with named errors."""

import numpy as np
import pytest
import torch

from unimedvl import StepCacheConfig, UniMedVLPipeline
from unimedvl.cli import build_parser
from unimedvl.commands.generate import pipeline_kwargs
from unimedvl.hub import NANO_MODEL_PATH
from unimedvl.pipelines.pipeline_unimedvl import VelocityExtrapolator


PROMPT = "An axial CT slice of the head."
STEPS = 12


@pytest.fixture(scope="module")
def nano():
    pipeline = UniMedVLPipeline.from_pretrained(NANO_MODEL_PATH)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate(pipe, step_cache=None, prompt=PROMPT, seed=0, steps=STEPS, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    output = pipe(prompt, num_inference_steps=steps, generator=generator, step_cache=step_cache, **kwargs)
    return output.images


def count_forwards(pipe, **kwargs) -> int:
    """Forwards of the real model during one call (the context prefill included)."""
    calls = []
    handle = pipe.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        generate(pipe, output_type="latent", **kwargs)
    finally:
        handle.remove()
    return len(calls)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((image.astype(np.float64) - reference) ** 2)))


def test_off_by_default_and_exact_when_every_step_runs(nano):
    default = nano(PROMPT, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="latent")
    assert torch.equal(generate(nano, None, output_type="latent"), default.images)
    # interval=1: the history is recorded but every step runs the model, so nothing may change.
    assert torch.equal(generate(nano, StepCacheConfig(interval=1), output_type="latent"), default.images)


@pytest.mark.parametrize(
    "step_cache, full_steps",
    [
        (None, STEPS),
        (StepCacheConfig(interval=3, warmup_steps=3), 6),  # steps 0, 1, 2 | 5 | 8 | 11
        (StepCacheConfig(interval=2, warmup_steps=2, cooldown_steps=2), 8),  # 0, 1 | 3 | 5 | 7 | 9 | 10, 11
        ({"interval": 4, "warmup_steps": 1}, 3),  # 0 | 4 | 8
    ],
)
def test_model_forwards_drop_as_scheduled(nano, step_cache, full_steps):
    assert count_forwards(nano, step_cache=step_cache) == 1 + full_steps  # + the context prefill


def test_a_branch_without_history_runs_the_model(nano):
    """Guidance switching on mid-way (cfg_interval (0, 0.5)) needs the text-uncond branch, which no full step
    recorded yet: that step runs the model although the schedule would extrapolate it."""
    schedule = StepCacheConfig(interval=STEPS, warmup_steps=1)  # only step 0 is scheduled
    assert count_forwards(nano, step_cache=schedule, cfg_interval=(0.0, 0.5)) == 1 + 2
    assert count_forwards(nano, step_cache=schedule) == 1 + 1  # guidance throughout: the history has both branches


def test_callback_runs_at_every_step(nano):
    steps = []
    generate(nano, StepCacheConfig(), output_type="latent", callback_on_step_end=lambda p, i, t, kw: steps.append(i))
    assert steps == list(range(STEPS))


def test_cached_images_stay_close_to_uncached_on_the_nano_model(nano):
    # Measured: 44.5 and 50.4 dB for seeds 0 and 1 (over 24 prompt / seed pairs at 30 steps: mean 47.3, min 35.5).
    for seed in (0, 1):
        reference = generate(nano, None, seed=seed, steps=30, output_type="np")[0]
        image = generate(nano, StepCacheConfig(interval=3, order=2), seed=seed, steps=30, output_type="np")[0]
        assert psnr(image, reference) > 38.0


@pytest.mark.parametrize("order", [0, 1, 2])
def test_extrapolation_is_exact_for_polynomials_of_its_order(order):
    """Newton extrapolation over a non-uniform t grid reproduces a polynomial of degree `order` exactly."""
    coefficients = torch.randn(order + 1, 3, 2, 4, 5, dtype=torch.float64)

    def velocity(t):
        return sum(c * t**k for k, c in enumerate(coefficients))

    extrapolator = VelocityExtrapolator(order)
    for t in (1.0, 0.93, 0.8, 0.71):  # more points than needed: only the last order + 1 count
        extrapolator.update(t, velocity(t))
    torch.testing.assert_close(extrapolator.predict(0.55, 3), velocity(0.55))
    torch.testing.assert_close(extrapolator.predict(0.55, 1), velocity(0.55)[:1])  # a prefix of the branches
    assert not extrapolator.can_predict(4)


@pytest.mark.parametrize(
    "step_cache, message",
    [
        (dict(interval=0), "`step_cache.interval` must be an integer >= 1"),
        (dict(interval=2.5), "`step_cache.interval` must be an integer >= 1"),
        (dict(order=3), "`step_cache.order` must be 0, 1 or 2"),
        (dict(order=-1), "`step_cache.order` must be an integer >= 0"),
        (dict(warmup_steps=-1), "`step_cache.warmup_steps` must be an integer >= 0"),
        (dict(cooldown_steps=True), "`step_cache.cooldown_steps` must be an integer >= 0"),
        (dict(every=3), r"`step_cache` has unknown fields \['every'\]"),
    ],
)
def test_bad_settings_raise_named_errors(nano, step_cache, message):
    with pytest.raises(ValueError, match=message):
        generate(nano, step_cache, steps=2)


def test_bad_step_cache_type_raises(nano):
    with pytest.raises(ValueError, match="`step_cache` must be None, a StepCacheConfig or a dict, got str"):
        generate(nano, "fast", steps=2)


def test_command_line_option():
    args = build_parser().parse_args(["generate", PROMPT, "-o", "out.png", "--step-cache-interval", "3"])
    assert pipeline_kwargs(args)["step_cache"] == {"interval": 3}
    args = build_parser().parse_args(["generate", PROMPT, "-o", "out.png"])
    assert "step_cache" not in pipeline_kwargs(args)
