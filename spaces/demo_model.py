# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The model behind the demo: one [`UniMedVLPipeline`] (its model also answers questions) and the calls the app makes.

Nothing here depends on Gradio; the app adds the UI, the error messages and the ZeroGPU decorator around these calls.
"""

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from unimedvl.hub import resolve_model


REPORT_MODALITIES = (
    "chest X-ray",
    "CT",
    "MRI",
    "ultrasound",
    "histopathology",
    "fundus photograph",
    "retinal OCT",
    "endoscopy",
)


def report_prompt(modality: str, indication: str = "") -> str:
    """Our wording of a report request (the release ships no report prompt)."""
    kind = "pathology report" if modality == "histopathology" else "radiology report"
    if modality in ("fundus photograph", "retinal OCT", "endoscopy"):
        kind = "clinical report"
    prompt = (
        f"Write a {kind} for this {modality} image with two sections: FINDINGS, describing what is visible, and "
        "IMPRESSION, summarising the most important observations."
    )
    if indication.strip():
        prompt += f" Clinical indication: {indication.strip()}"
    return prompt


def history_to_turns(history) -> list[tuple[str, str]]:
    """(question, answer) pairs from a Gradio chat history (messages with `str` or typed-list content)."""
    turns, question = [], None
    for message in history or []:
        text = _message_text(message.get("content"))
        if message.get("role") == "user":
            question = text if question is None else f"{question}\n{text}"
        elif message.get("role") == "assistant" and question is not None:
            turns.append((question, text))
            question = None
    return turns


def _message_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "".join(_message_text(item) for item in content)
    return ""


def build_messages(image: Image.Image | None, turns: list[tuple[str, str]], question: str) -> list[dict]:
    """Chat messages for the processor: the image opens the first user turn, earlier answers are assistant turns."""
    messages = []
    for position, (asked, answered) in enumerate([*turns, (question, None)]):
        content = [{"type": "image", "image": image}] if position == 0 and image is not None else []
        messages.append({"role": "user", "content": content + [{"type": "text", "text": asked}]})
        if answered is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answered}]})
    return messages


@dataclass(frozen=True)
class SamplingSettings:
    """Generation controls of one request; None keeps the pipeline's release default for the task."""

    steps: int
    guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    timestep_shift: float | None = None
    seed: int = 0
    height: int | None = None  # None with an input image: the input's aspect-preserving size
    width: int | None = None


class DemoModel:
    """The loaded pipeline and the device it runs on.

    Args:
        pipeline ([`UniMedVLPipeline`]): model, VAE, scheduler and processor.
        name (`str`): what was loaded, shown in the UI.
    """

    def __init__(self, pipeline, name: str):
        self.pipeline = pipeline
        self.name = name

    @classmethod
    def load(cls, name_or_path: str | None = None, device: str = "auto", dtype: str = "auto") -> "DemoModel":
        """Load `name_or_path` (default: `$UNIMEDVL_MODEL`, else the demo default) on `device`."""
        from unimedvl import UniMedVLPipeline
        from unimedvl.modeling.original_checkpoint import check_checkpoint_folder

        name = resolve_model(name_or_path)
        if _looks_like_path(name) and not Path(name).is_dir():
            raise FileNotFoundError(f"model folder not found: {name}")
        check_checkpoint_folder(name)  # a folder that is no checkpoint: say what it holds and what is expected
        target = pick_device(device)
        pipeline = UniMedVLPipeline.from_pretrained(name, torch_dtype=pick_dtype(dtype, target))
        pipeline.set_progress_bar_config(disable=True)
        pipeline.model.eval()
        pipeline.to(target)
        return cls(pipeline, name)

    @property
    def model(self):
        return self.pipeline.model

    @property
    def processor(self):
        return self.pipeline.processor

    @property
    def device(self):
        return self.model.device

    @property
    def max_side(self) -> int:
        """Largest output side the model can generate, in pixels."""
        return self.model.config.max_latent_size * self.model.config.latent_downsample

    @property
    def side_step(self) -> int:
        return self.model.config.latent_downsample

    def stream_answer(
        self,
        question: str,
        image: Image.Image | None = None,
        turns: list[tuple[str, str]] = (),
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        think: bool = False,
    ) -> Iterator[str]:
        """Answer `question` about `image` after the earlier `turns`; yields the answer so far as it grows.

        `temperature` 0 is greedy decoding. Raises `ValueError` for an empty question or a conversation longer than the
        model's context."""
        from transformers import TextIteratorStreamer

        if not question or not question.strip():
            raise ValueError("Please type a question.")
        inputs = self.processor.apply_chat_template(
            build_messages(image, list(turns), question.strip()),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            think=think,
        )
        self._check_context(inputs["input_ids"], max_new_tokens)
        inputs = inputs.to(self.device)
        generation_kwargs = {"max_new_tokens": int(max_new_tokens), "do_sample": temperature > 0}
        if temperature > 0:
            generation_kwargs["temperature"] = float(temperature)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failures = []

        def generate():
            try:
                self.model.generate(**inputs, **generation_kwargs, streamer=streamer)
            except BaseException as error:  # re-raised in the caller's thread
                failures.append(error)
                streamer.end()

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        answer = ""
        for piece in streamer:
            answer += piece
            yield answer
        thread.join()
        if failures:
            raise failures[0]

    def _check_context(self, input_ids, max_new_tokens: int) -> None:
        from unimedvl.commands.chat import check_context_length

        try:
            check_context_length(input_ids, self.model.config, max_new_tokens)
        except ValueError:
            raise ValueError(
                "The conversation no longer fits the model's context. Start a new conversation or lower the answer "
                "length."
            ) from None

    def generate(
        self,
        prompt: str,
        settings: SamplingSettings,
        image: Image.Image | None = None,
        think: bool = False,
        describe_image: bool = False,
        on_step: Callable[[int, int], None] | None = None,
    ) -> tuple[Image.Image, str]:
        """One image from `prompt` (text-to-image) or from `image` and the instruction `prompt`.

        Returns the image and the model's text (think-mode plan or the description of the input; "" if none)."""
        import torch

        if not prompt or not prompt.strip():
            raise ValueError("Please write a prompt." if image is None else "Please write an instruction.")
        if describe_image and image is None:
            raise ValueError("Describing the input needs an input image.")

        def report_step(pipeline, step, timestep, callback_kwargs):
            if on_step is not None:
                on_step(step + 1, settings.steps)
            return {}

        with torch.inference_mode():
            output = self.pipeline(
                prompt.strip(),
                image=image,
                height=settings.height,
                width=settings.width,
                num_inference_steps=int(settings.steps),
                guidance_scale=settings.guidance_scale,
                image_guidance_scale=settings.image_guidance_scale if image is not None else None,
                timestep_shift=settings.timestep_shift,
                generator=torch.Generator().manual_seed(int(settings.seed)),
                think=think,
                describe_image=describe_image if image is not None else None,
                callback_on_step_end=report_step,
            )
        return output.images[0], "\n\n".join(output.texts or [])


def _looks_like_path(name: str) -> bool:
    """A local path rather than a Hub id (`owner/name`): absolute, relative with `.`, `~`, or not two parts."""
    return name.startswith((os.sep, ".", "~")) or os.path.isabs(name) or name.count("/") != 1


def pick_device(spec: str = "auto") -> str:
    """`auto` → CUDA if present, else MPS, else CPU. (On ZeroGPU Spaces CUDA reads as present at start-up.)"""
    import torch

    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if spec == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine; use --device cpu.")
    if spec == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: MPS is not available on this machine; use --device cpu.")
    return spec


def pick_dtype(spec: str, device: str):
    """`auto` → bfloat16 on CUDA, float16 on MPS, float32 on CPU."""
    import torch

    if spec != "auto":
        return getattr(torch, spec)
    return {"cuda": torch.bfloat16, "mps": torch.float16}.get(device, torch.float32)


__all__ = [
    "REPORT_MODALITIES",
    "DemoModel",
    "SamplingSettings",
    "build_messages",
    "history_to_turns",
    "pick_device",
    "pick_dtype",
    "report_prompt",
]
