# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Task presets and prompt helpers for UniMedVL generation.

The release ships exactly one generation prompt, the H&E → HER2 IHC staining instruction, run with cfg_text 4.0,
cfg_img 2.0, interval [0, 1], `text_channel` renorm, shift 3.0 and 50 timesteps after an understanding pass whose
answer is appended to the instruction. Every other wording here (super-resolution, modality translation,
counterfactuals, text-to-image prompts per modality) is OURS, written to match the paper's task descriptions; it is
not an official prompt.
"""

from dataclasses import dataclass, field


# The release's system prompt for "think" generation (kept byte for byte, including the final newline).
GENERATION_THINK_PROMPT = (
    "You should first think about the planning process in your mind, and then generate the image.\n"
    "The planning process is enclosed within <think> </think> tags; that is, <think> planning process here </think> "
    "image here.\n"
)

MODALITIES = {
    "cxr": "chest X-ray",
    "ct": "CT",
    "mri": "MRI",
    "ultrasound": "ultrasound",
    "histopathology": "histopathology",
    "fundus": "color fundus photograph",
    "oct": "retinal OCT",
    "endoscopy": "endoscopy",
}


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings of one generation mode (see `UniMedVLPipeline.__call__` for their meaning)."""

    guidance_scale: float
    image_guidance_scale: float
    cfg_interval: tuple[float, float]
    cfg_renorm_type: str
    timestep_shift: float = 3.0
    num_inference_steps: int = 49  # the release's 50 timesteps = 49 model evaluations


# Release defaults: `InterleaveInferencer.interleave_inference` for text-to-image, the editing script for
# image-conditioned generation.
TEXT_TO_IMAGE_DEFAULTS = GenerationSettings(3.0, 1.5, (0.4, 1.0), "global")
IMAGE_TO_IMAGE_DEFAULTS = GenerationSettings(4.0, 2.0, (0.0, 1.0), "text_channel")


@dataclass(frozen=True)
class TaskPreset:
    """An image-conditioned task: instruction template plus the settings it runs with.

    `instruction` may hold `{placeholders}` filled from keyword arguments of [`task_instruction`]; `describe_image`
    runs the release's understanding pass first and appends its answer to the instruction."""

    instruction: str
    settings: GenerationSettings = IMAGE_TO_IMAGE_DEFAULTS
    describe_image: bool = False
    defaults: dict = field(default_factory=dict)
    official: bool = False


TASK_PRESETS = {
    "staining": TaskPreset(
        instruction=(
            "Synthesize a HER2 IHC image with {level} expression level from the given H&E stained pathology input, "
            "maintaining all anatomical structures and generating realistic {level} immunohistochemistry patterns."
        ),
        describe_image=True,
        defaults={"level": "2+"},
        official=True,
    ),
    "super-resolution": TaskPreset(
        instruction=(
            "Reconstruct a high-resolution version of this low-resolution {modality} image with {factor}x finer "
            "detail, keeping every anatomical structure unchanged."
        ),
        defaults={"modality": "MRI", "factor": 4},
    ),
    "translate": TaskPreset(
        instruction=(
            "Translate this {source} {modality} image into a {target} {modality} image of the same slice, preserving "
            "the anatomy."
        ),
        defaults={"source": "T2-weighted", "target": "FLAIR", "modality": "MRI"},
    ),
    "counterfactual": TaskPreset(
        instruction=(
            "Generate a counterfactual version of this chest X-ray in which {change}, keeping the patient's anatomy "
            "and the acquisition unchanged."
        ),
        defaults={"change": "the findings have resolved"},
    ),
}


def task_instruction(task: str, **fields) -> str:
    """Instruction text of a task preset, e.g. `task_instruction("translate", source="T1-weighted", target="T2-weighted")`.

    Raises:
        ValueError: unknown task name, or a field the template does not use.
    """
    if task not in TASK_PRESETS:
        raise ValueError(f"Unknown task preset {task!r}; choose one of {sorted(TASK_PRESETS)}.")
    preset = TASK_PRESETS[task]
    values = {**preset.defaults, **fields}
    unknown = set(fields) - set(preset.defaults)
    if unknown:
        raise ValueError(f"Task {task!r} has no field(s) {sorted(unknown)}; it uses {sorted(preset.defaults)}.")
    return preset.instruction.format(**values)


def text_to_image_prompt(modality: str, description: str = "", view: str = "") -> str:
    """A text-to-image prompt for one of the 8 generation modalities (our wording), e.g.
    `text_to_image_prompt("ct", "an axial slice of the head showing a left frontal hemorrhage")`.

    Args:
        modality: a key of `MODALITIES` (`cxr`, `ct`, `mri`, `ultrasound`, `histopathology`, `fundus`, `oct`,
            `endoscopy`) or its display name.
        description: findings or anatomy to show.
        view: optional view / plane / sequence, e.g. "PA", "axial", "T2-weighted".
    """
    names = {key: key for key in MODALITIES} | {name.lower(): key for key, name in MODALITIES.items()}
    key = names.get(modality.lower())
    if key is None:
        raise ValueError(f"Unknown modality {modality!r}; choose one of {sorted(MODALITIES)}.")
    subject = " ".join(part for part in (view, MODALITIES[key]) if part)
    article = "An" if subject[0].lower() in "aeiou" else "A"
    return f"{article} {subject} image" + (f" showing {description}." if description else ".")


__all__ = [
    "GENERATION_THINK_PROMPT",
    "IMAGE_TO_IMAGE_DEFAULTS",
    "MODALITIES",
    "TASK_PRESETS",
    "TEXT_TO_IMAGE_DEFAULTS",
    "GenerationSettings",
    "TaskPreset",
    "task_instruction",
    "text_to_image_prompt",
]
