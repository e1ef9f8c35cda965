# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""UniMedVL demo: ask about medical images, draft reports, generate and transform images.

    python spaces/app.py --model ./UniMedVL-hf          # or: unimedvl demo --model ./UniMedVL-hf
    UNIMEDVL_MODEL=General-Medical-AI/UniMedVL python spaces/app.py

The same file is the `app.py` of the Hugging Face Space. Endpoints for `gradio_client`: `/chat`, `/report`,
`/generate`, `/edit` and `/preview` (see README.md). Research use only: nothing here is a medical device.
"""

# Hugging Face's ZeroGPU package is called `spaces` too. Our folder is installed as `unimedvl.spaces`, so this import
# finds ZeroGPU's package when it is installed (it must come before torch initialises CUDA); a module without `GPU`
# (not installed, or some unrelated `spaces`) means "no ZeroGPU" and the decorator below does nothing.
try:
    import spaces as zero_gpu
except ImportError:
    zero_gpu = None

import argparse
import functools
import inspect
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

try:
    from unimedvl.modeling.medical_io import MedicalImageError
    from unimedvl.pipelines.presets import (
        IMAGE_TO_IMAGE_DEFAULTS,
        MODALITIES,
        TASK_PRESETS,
        TEXT_TO_IMAGE_DEFAULTS,
        task_instruction,
        text_to_image_prompt,
    )
    from unimedvl.spaces.demo_options import DemoSettings, add_demo_arguments, settings_from_args
    from unimedvl.spaces.demo_model import (
        REPORT_MODALITIES,
        DemoModel,
        SamplingSettings,
        history_to_turns,
        report_prompt,
    )
    from unimedvl.spaces.demo_uploads import ACCEPTED_SUFFIXES, PLANES, open_upload, render_preview, window_choices
except ImportError as error:  # a Space uploaded without the package
    raise SystemExit(
        f"The UniMedVL demo needs the `unimedvl` package ({error}). Install it (`pip install -e .[space]` in the "
        "repository) or deploy the Space with `unimedvl push --space-id ...`, which uploads the package with it."
    ) from error


logger = logging.getLogger("unimedvl.demo")

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
MAX_SEED = 2**31 - 1
MAX_SLICES = 4096
CHAT_GPU_SECONDS = 60
GENERATION_GPU_SECONDS = 120

DISCLAIMER = (
    "⚠️ **Research use only.** UniMedVL is an experimental research model, not a medical device. Its answers, "
    "reports and images may be wrong or invented and must not be used for diagnosis, treatment or any other clinical "
    "decision. Generated images are synthetic. Do not upload identifiable patient data; uploads are deleted within "
    "an hour."
)

FREE_INSTRUCTION = "free"
EDIT_TASKS = [
    ("Super-resolution", "super-resolution"),
    ("Virtual staining (H&E → HER2 IHC)", "staining"),
    ("Modality translation", "translate"),
    ("Counterfactual", "counterfactual"),
    ("Free instruction", FREE_INSTRUCTION),
]

CSS = """
#disclaimer { border: 1px solid #d97706; border-radius: 8px; padding: 4px 12px; background: #fffbeb; color: #78350f; }
"""


# ---------------------------------------------------------------------------------------------------------------------
# Wrappers: ZeroGPU and friendly errors
# ---------------------------------------------------------------------------------------------------------------------


def gpu(duration: int):
    """`spaces.GPU(duration=...)` on ZeroGPU hardware; elsewhere the function is returned unchanged."""
    decorator = getattr(zero_gpu, "GPU", None)
    if decorator is None:
        return lambda fn: fn
    return decorator(duration=duration)


def friendly_error(error: Exception) -> gr.Error:
    """What the user sees for `error`: our own messages as they are, anything unexpected as a short note (the
    traceback goes to the server log only)."""
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, (ValueError, MedicalImageError)):  # bad input: the message says what to change
        return gr.Error(str(error), print_exception=False)
    if "out of memory" in str(error).lower():
        return gr.Error("The model ran out of memory. Try a smaller image size or fewer tokens.", print_exception=False)
    logger.exception("demo request failed")
    return gr.Error("Something went wrong while running the model. Please try again.", print_exception=False)


def user_errors(fn):
    """Turn every exception of `fn` (a function or a generator function) into a `gr.Error`, never a traceback.

    A decorated generator function (ZeroGPU's decorator returns a plain function that returns a generator) is still
    wrapped as a generator function, which is how Gradio recognises streaming handlers."""
    if inspect.isgeneratorfunction(inspect.unwrap(fn)):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:
                raise friendly_error(error) from None

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            raise friendly_error(error) from None

    return wrapper


# ---------------------------------------------------------------------------------------------------------------------
# Image input panel: upload → window / slice → preview (what the model sees)
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ImagePanel:
    file: gr.File
    window: gr.Dropdown
    plane: gr.Radio
    index: gr.Slider
    preview: gr.Image
    info: gr.Markdown

    @property
    def controls(self) -> list:
        return [self.file, self.window, self.plane, self.index]

    @property
    def outputs(self) -> list:
        return [self.preview, self.info, self.index, self.plane]


def image_panel(prefix: str) -> ImagePanel:
    """Upload box, display controls and the preview, laid out in the current column."""
    file = gr.File(
        label="Upload: PNG, JPEG, DICOM (.dcm) or NIfTI (.nii, .nii.gz)",
        file_types=list(ACCEPTED_SUFFIXES),
        type="filepath",
        elem_id=f"{prefix}-file",
    )
    with gr.Row():
        window = gr.Dropdown(
            choices=window_choices(),
            value="auto",
            label="Window",
            info="CT presets in HU; auto = DICOM header window, else min-max; mr = 1st-99th percentile",
            elem_id=f"{prefix}-window",
        )
        plane = gr.Radio(list(PLANES), value="axial", label="Plane", visible=False, elem_id=f"{prefix}-plane")
    # The real range is set per upload; the initial maximum bounds what API callers may ask for (then clamped).
    index = gr.Slider(
        0, MAX_SLICES - 1, value=0, step=1, label="Slice / frame", visible=False, elem_id=f"{prefix}-index"
    )
    preview = gr.Image(
        label="Preview: what the model sees",
        type="pil",
        format="png",
        interactive=False,
        height=320,
        elem_id=f"{prefix}-preview",
    )
    info = gr.Markdown(label="About the image", elem_id=f"{prefix}-info")
    return ImagePanel(file, window, plane, index, preview, info)


# Queue groups: every model call (chat, report, generate, edit) shares the "model" group, `concurrency` at a time (one
# GPU); decoding uploads is CPU work that runs beside it. UI-only helpers stay off the API.
PRIVATE = {"api_visibility": "private"}
PREVIEW_QUEUE = {"concurrency_limit": 4, "concurrency_id": "preview"}


def model_queue(settings: DemoSettings) -> dict:
    return {"concurrency_limit": settings.concurrency, "concurrency_id": "model"}


def example_path(name: str) -> str:
    return str(EXAMPLES_DIR / name)


# ---------------------------------------------------------------------------------------------------------------------
# Previews of uploads
# ---------------------------------------------------------------------------------------------------------------------


def decode_upload(file, window, plane, index, max_bytes: int):
    """Check an uploaded file (only Gradio's own upload folder is accepted) and render it as the model's input."""
    upload = open_upload(file, allowed_roots=[get_upload_folder()], max_bytes=max_bytes)
    shown = render_preview(upload, window or "auto", plane or "axial", None if index is None else int(index))
    return upload, shown


def cleared_panel():
    return None, "", gr.Slider(value=0, visible=False), gr.Radio(visible=False)


def wire_image_panel(panel: ImagePanel, max_bytes: int, also_clear: list | None = None) -> None:
    """Events of an image panel: a new file clears the old preview (so a file that fails to decode never leaves a
    stale image, and `also_clear` components are emptied) and then renders the new one at its middle slice / frame;
    window, plane and slice changes re-render it."""

    def show(file, window, plane, index):
        if not file:
            return cleared_panel()
        upload, shown = decode_upload(file, window, plane, index, max_bytes)
        slider = gr.Slider(
            minimum=0,
            maximum=max(shown.num_slices - 1, 1),
            value=shown.index,
            visible=shown.num_slices > 1,
            label="Slice" if upload.kind == "nifti" else "Frame",
        )
        return shown.image, shown.info, slider, gr.Radio(visible=upload.kind == "nifti")

    def show_middle(file, window, plane):
        if not file:  # already cleared; skipping (not clearing again) keeps a late reply from erasing a newer upload
            return tuple(gr.skip() for _ in panel.outputs)
        return show(file, window, plane, None)

    def clear():
        return (*cleared_panel(), *([None] * len(also_clear or [])))

    new_file = [panel.file, panel.window, panel.plane]
    panel.file.change(clear, None, panel.outputs + (also_clear or []), queue=False, **PRIVATE).then(
        user_errors(show_middle), new_file, panel.outputs, **PREVIEW_QUEUE, **PRIVATE
    )
    # "always_last": a change made while a preview is rendering is rendered after it, never dropped.
    panel.plane.input(
        user_errors(show_middle), new_file, panel.outputs, trigger_mode="always_last", **PREVIEW_QUEUE, **PRIVATE
    )
    for trigger in (panel.window.input, panel.index.release):
        trigger(
            user_errors(show), panel.controls, panel.outputs, trigger_mode="always_last", **PREVIEW_QUEUE, **PRIVATE
        )


def add_preview_api(panel: ImagePanel, max_bytes: int) -> None:
    """`/preview` for API clients. Its index input is its own (hidden) number: the UI slider's range follows the
    session's last upload, which would reject an API caller's index."""

    def preview(file, window, plane, index):
        """Decode an upload (DICOM / NIfTI / PNG / JPEG) as the model's input; returns the image, a description and
        the slice / frame shown (`index` is clamped to the file's range)."""
        _, shown = decode_upload(file, window, plane, index, max_bytes)
        return shown.image, shown.info, shown.index

    index = gr.Number(0, precision=0, minimum=0, visible=False, label="Slice / frame index (clamped)")
    index.change(
        user_errors(preview),
        [panel.file, panel.window, panel.plane, index],
        [panel.preview, panel.info, panel.index],
        api_name="preview",
        **PREVIEW_QUEUE,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Tabs
# ---------------------------------------------------------------------------------------------------------------------


def chat_tab(holder: DemoModel, settings: DemoSettings) -> None:
    """Questions about an image with streamed answers; follow-ups continue the conversation."""

    @gpu(CHAT_GPU_SECONDS)
    def chat(question, image, history, max_new_tokens, temperature, think):
        """Answer a question about the image, continuing the conversation in `history`; streams the reply."""
        history = list(history or [])
        asked = [{"role": "user", "content": question}]
        answers = holder.stream_answer(question, image, history_to_turns(history), max_new_tokens, temperature, think)
        for answer in answers:
            yield history + asked + [{"role": "assistant", "content": answer}], ""

    with gr.Row():
        with gr.Column(scale=2):
            panel = image_panel("chat")
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Conversation", height=420, elem_id="chatbot")
            question = gr.Textbox(
                label="Question", placeholder="Ask about the image, e.g. Which organ is shown?", elem_id="chat-question"
            )
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="chat-ask")
                new_chat = gr.Button("New conversation", elem_id="chat-clear")
            with gr.Accordion("Answer settings", open=False):
                max_new_tokens = gr.Slider(1, 2048, value=settings.max_new_tokens, step=1, label="Max new tokens")
                temperature = gr.Slider(0, 1.5, value=0, step=0.05, label="Temperature (0 = greedy)")
                think = gr.Checkbox(False, label="Think first (the release's reasoning prompt)")
    gr.Examples(
        examples=[
            [example_path("head_ct.dcm"), "auto", "Which imaging modality is this?"],
            [example_path("CT_small.dcm"), "soft-tissue", "Which organ is shown in this CT image?"],
            [example_path("head_phantom.nii.gz"), "brain", "Is there a hyperdense lesion?"],
            [example_path("fundus.jpg"), "auto", "Is this fundus photograph normal?"],
            [example_path("ihc_colon.jpg"), "auto", "What staining and tissue are shown?"],
        ],
        inputs=[panel.file, panel.window, question],
        label="Examples (openly licensed, see examples/README.md)",
    )

    max_bytes = settings.max_upload_mb << 20
    wire_image_panel(panel, max_bytes, also_clear=[chatbot])  # a new image starts a new conversation
    add_preview_api(panel, max_bytes)
    inputs = [question, panel.preview, chatbot, max_new_tokens, temperature, think]
    ask.click(user_errors(chat), inputs, [chatbot, question], api_name="chat", **model_queue(settings))
    question.submit(user_errors(chat), inputs, [chatbot, question], **model_queue(settings), **PRIVATE)
    new_chat.click(lambda: ([], ""), None, [chatbot, question], queue=False, **PRIVATE)


def report_tab(holder: DemoModel, settings: DemoSettings) -> None:
    """A draft FINDINGS / IMPRESSION report for an image."""

    @gpu(CHAT_GPU_SECONDS)
    def report(image, modality, indication, max_new_tokens):
        """Draft a FINDINGS / IMPRESSION report for the image; streams the text."""
        if image is None:
            raise ValueError("Please upload an image to report on.")
        yield from holder.stream_answer(report_prompt(modality, indication or ""), image, (), max_new_tokens)

    with gr.Row():
        with gr.Column(scale=2):
            panel = image_panel("report")
        with gr.Column(scale=3):
            modality = gr.Dropdown(list(REPORT_MODALITIES), value="CT", label="Modality")
            indication = gr.Textbox(label="Clinical indication (optional)", placeholder="e.g. chest pain")
            max_new_tokens = gr.Slider(1, 2048, value=settings.max_new_tokens, step=1, label="Max new tokens")
            run = gr.Button("Write report", variant="primary", elem_id="report-run")
            text = gr.Textbox(label="Draft report (unverified)", lines=14, elem_id="report-output")
    gr.Examples(
        examples=[
            [example_path("CT_small.dcm"), "soft-tissue", "CT"],
            [example_path("MR_small.dcm"), "mr", "MRI"],
            [example_path("fundus.jpg"), "auto", "fundus photograph"],
        ],
        inputs=[panel.file, panel.window, modality],
    )

    wire_image_panel(panel, settings.max_upload_mb << 20)
    run.click(
        user_errors(report),
        [panel.preview, modality, indication, max_new_tokens],
        text,
        api_name="report",
        **model_queue(settings),
    )


def size_sliders(holder: DemoModel, settings: DemoSettings) -> tuple[gr.Slider, gr.Slider]:
    side = min(settings.size or 1024, holder.max_side)
    # 64 px at least, unless the model's largest side is that small (UniMedVL-Nano makes 64 px images).
    smallest = min(64, max(holder.side_step, holder.max_side // 2))
    with gr.Row():
        height = gr.Slider(smallest, holder.max_side, value=side, step=holder.side_step, label="Height")
        width = gr.Slider(smallest, holder.max_side, value=side, step=holder.side_step, label="Width")
    return height, width


def seed_controls() -> tuple[gr.Number, gr.Checkbox]:
    with gr.Row():
        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
        randomize = gr.Checkbox(True, label="Random seed")
    return seed, randomize


def text_to_image_tab(holder: DemoModel, settings: DemoSettings) -> None:
    """A synthetic image from a modality preset and a description; the prompt is shown and editable."""

    @gpu(GENERATION_GPU_SECONDS)
    def generate(
        prompt,
        steps,
        guidance_scale,
        timestep_shift,
        seed,
        randomize_seed,
        height,
        width,
        think,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way of asking for a progress bar)
    ):
        """Text-to-image; returns the image, the seed used and the model's plan (think mode)."""
        seed = pick_seed(seed, randomize_seed)
        progress(0, desc="Starting")
        sampling = SamplingSettings(
            steps=int(steps),
            guidance_scale=guidance_scale,
            timestep_shift=timestep_shift,
            seed=seed,
            height=int(height),
            width=int(width),
        )
        image, plan = holder.generate(prompt, sampling, think=think, on_step=step_reporter(progress))
        return image, seed, plan

    def compose_prompt(modality, view, description):
        return text_to_image_prompt(modality, (description or "").strip(), (view or "").strip())

    with gr.Row():
        with gr.Column():
            modality = gr.Dropdown(
                [(name[0].upper() + name[1:], key) for key, name in MODALITIES.items()],
                value="cxr",
                label="Modality",
                elem_id="t2i-modality",
            )
            view = gr.Textbox(label="View / plane / sequence (optional)", placeholder="e.g. PA, axial, T2-weighted")
            description = gr.Textbox(label="Findings / anatomy", placeholder="e.g. a right lower lobe pneumonia")
            prompt = gr.Textbox(
                value=compose_prompt("cxr", "", ""),
                label="Prompt sent to the model (editable)",
                lines=3,
                elem_id="t2i-prompt",
            )
            with gr.Accordion("Advanced settings", open=False):
                defaults = TEXT_TO_IMAGE_DEFAULTS
                steps = gr.Slider(1, 100, value=settings.steps, step=1, label="Steps")
                guidance = gr.Slider(0, 10, value=defaults.guidance_scale, step=0.1, label="Guidance scale")
                shift = gr.Slider(0.5, 6, value=defaults.timestep_shift, step=0.1, label="Timestep shift")
                height, width = size_sliders(holder, settings)
                seed, randomize = seed_controls()
                think = gr.Checkbox(False, label="Think first (the model writes a plan)")
            run = gr.Button("Generate", variant="primary", elem_id="t2i-run")
        with gr.Column():
            image = gr.Image(label="Generated (synthetic)", format="png", interactive=False, elem_id="t2i-output")
            used_seed = gr.Number(label="Seed used", precision=0, interactive=False)
            plan = gr.Textbox(label="Model's plan", lines=3, interactive=False)
    gr.Examples(
        examples=[
            ["cxr", "PA", "a right lower lobe pneumonia"],
            ["ct", "axial", "a left frontal intraparenchymal hemorrhage"],
            ["mri", "axial T2-weighted", "a normal adult brain"],
            ["ultrasound", "", "a gallbladder with a single gallstone"],
            ["histopathology", "H&E", "invasive ductal carcinoma of the breast"],
            ["fundus", "", "moderate non-proliferative diabetic retinopathy"],
            ["oct", "", "a normal macula"],
            ["endoscopy", "", "a sessile colon polyp"],
        ],
        inputs=[modality, view, description],
    )

    for trigger in (modality.change, view.change, description.change):
        trigger(compose_prompt, [modality, view, description], prompt, queue=False, **PRIVATE)
    run.click(
        user_errors(generate),
        [prompt, steps, guidance, shift, seed, randomize, height, width, think],
        [image, used_seed, plan],
        api_name="generate",
        **model_queue(settings),
    )


def image_to_image_tab(holder: DemoModel, settings: DemoSettings) -> None:
    """Super-resolution, staining, translation, counterfactuals or a free instruction; input and output side by side."""

    @gpu(GENERATION_GPU_SECONDS)
    def edit(
        image,
        instruction,
        describe_first,
        steps,
        guidance_scale,
        image_guidance_scale,
        timestep_shift,
        seed,
        randomize_seed,
        match_input_size,
        height,
        width,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way of asking for a progress bar)
    ):
        """Image-conditioned generation; returns the image, the seed used and the model's description (if any)."""
        if image is None:
            raise ValueError("Please upload an input image.")
        seed = pick_seed(seed, randomize_seed)
        progress(0, desc="Reading the image" if describe_first else "Starting")
        sampling = SamplingSettings(
            steps=int(steps),
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            timestep_shift=timestep_shift,
            seed=seed,
            height=None if match_input_size else int(height),
            width=None if match_input_size else int(width),
        )
        output, notes = holder.generate(
            instruction, sampling, image=image, describe_image=describe_first, on_step=step_reporter(progress)
        )
        return output, seed, notes

    with gr.Row():
        with gr.Column():
            panel = image_panel("edit")
        with gr.Column():
            output = gr.Image(
                label="Output (synthetic)", format="png", interactive=False, height=320, elem_id="edit-output"
            )
            used_seed = gr.Number(label="Seed used", precision=0, interactive=False)
            notes = gr.Textbox(label="Model's description of the input", lines=3, interactive=False)
    with gr.Row():
        with gr.Column():
            task = gr.Radio(EDIT_TASKS, value="super-resolution", label="Task", elem_id="edit-task")
            fields = task_field_boxes()
            instruction = gr.Textbox(
                value=task_instruction("super-resolution"),
                label="Instruction sent to the model (editable)",
                lines=3,
                elem_id="edit-instruction",
            )
            describe_first = gr.Checkbox(
                TASK_PRESETS["super-resolution"].describe_image,
                label="Describe the input first (the release's staining recipe)",
            )
        with gr.Column():
            with gr.Accordion("Advanced settings", open=False):
                defaults = IMAGE_TO_IMAGE_DEFAULTS
                steps = gr.Slider(1, 100, value=settings.steps, step=1, label="Steps")
                guidance = gr.Slider(0, 10, value=defaults.guidance_scale, step=0.1, label="Text guidance scale")
                image_guidance = gr.Slider(
                    0, 10, value=defaults.image_guidance_scale, step=0.1, label="Image guidance scale"
                )
                shift = gr.Slider(0.5, 6, value=defaults.timestep_shift, step=0.1, label="Timestep shift")
                match_input = gr.Checkbox(settings.size is None, label="Output size: same as the input")
                height, width = size_sliders(holder, settings)
                seed, randomize = seed_controls()
            run = gr.Button("Run", variant="primary", elem_id="edit-run")
    gr.Examples(
        examples=[
            [example_path("MR_small.dcm"), "mr", "super-resolution"],
            [example_path("MR_small.dcm"), "mr", "translate"],
            [example_path("CT_small.dcm"), "soft-tissue", FREE_INSTRUCTION],
        ],
        inputs=[panel.file, panel.window, task],
    )

    wire_image_panel(panel, settings.max_upload_mb << 20)
    wire_task_fields(task, fields, instruction, describe_first)
    run.click(
        user_errors(edit),
        [panel.preview, instruction, describe_first, steps, guidance, image_guidance, shift, seed, randomize]
        + [match_input, height, width],
        [output, used_seed, notes],
        api_name="edit",
        **model_queue(settings),
    )


@dataclass
class TaskFields:
    groups: dict  # task → gr.Row holding its fields
    boxes: list  # (task, field name, gr.Textbox)


def task_field_boxes() -> TaskFields:
    """One row of text boxes per task preset, for the `{placeholders}` of its instruction; only the selected task's
    row is visible."""
    groups, boxes = {}, []
    for name, preset in TASK_PRESETS.items():
        with gr.Row(visible=name == "super-resolution") as group:
            for field_name, default in preset.defaults.items():
                boxes.append((name, field_name, gr.Textbox(str(default), label=field_name.capitalize())))
        groups[name] = group
    return TaskFields(groups, boxes)


def wire_task_fields(task: gr.Radio, fields: TaskFields, instruction: gr.Textbox, describe_first: gr.Checkbox) -> None:
    """Choosing a task shows its fields and writes its instruction; editing a field rewrites the instruction."""
    components = [box for _, _, box in fields.boxes]

    def compose(task_name, *values):
        if task_name == FREE_INSTRUCTION:
            return gr.Textbox()  # keep what the user wrote
        chosen = zip(fields.boxes, values, strict=True)
        return task_instruction(task_name, **{name: value for (owner, name, _), value in chosen if owner == task_name})

    def select(task_name, *values):
        rows = [gr.Row(visible=name == task_name) for name in fields.groups]
        describe = TASK_PRESETS[task_name].describe_image if task_name in TASK_PRESETS else False
        text = compose(task_name, *values) if task_name != FREE_INSTRUCTION else ""
        return [*rows, text, describe]

    outputs = [*fields.groups.values(), instruction, describe_first]
    task.change(user_errors(select), [task, *components], outputs, queue=False, **PRIVATE)
    for box in components:
        box.change(user_errors(compose), [task, *components], instruction, queue=False, **PRIVATE)


# ---------------------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------------------


def build_app(model: "str | DemoModel | None" = None, settings: DemoSettings | None = None) -> gr.Blocks:
    """The demo's Blocks, serving `model` (a loaded [`DemoModel`], a repo id / folder, or None: the settings' model,
    else `$UNIMEDVL_MODEL`, else the default). The loaded model is the app's only state. Call [`launch`] on the
    result (or `.queue().launch()` yourself)."""
    settings = settings or DemoSettings()
    if isinstance(model, DemoModel):
        holder = model
    else:
        holder = DemoModel.load(model or settings.model, settings.device, settings.dtype)

    with gr.Blocks(title="UniMedVL demo", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# UniMedVL\nOne model that reads medical images (questions, reports) and generates them "
            f"([paper](https://arxiv.org/abs/2510.15710)). Serving `{display_name(holder.name)}` on `{holder.device}`."
        )
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        with gr.Tabs():
            with gr.Tab("Chat / VQA", id="chat", elem_id="tab-chat"):
                chat_tab(holder, settings)
            with gr.Tab("Report", id="report", elem_id="tab-report"):
                report_tab(holder, settings)
            with gr.Tab("Text to image", id="generate", elem_id="tab-generate"):
                text_to_image_tab(holder, settings)
            with gr.Tab("Image to image", id="edit", elem_id="tab-edit"):
                image_to_image_tab(holder, settings)
    demo.unimedvl_model = holder  # for callers that embed the app
    return demo


def display_name(model: str) -> str:
    """A Hub id as is; a local folder by its name only (the server's paths are nobody's business)."""
    return Path(model).name if Path(model).is_dir() else model


def pick_seed(seed, randomize: bool) -> int:
    if randomize or seed is None:
        return random.randint(0, MAX_SEED)
    return int(seed) % (MAX_SEED + 1)


def step_reporter(progress):
    def report(step: int, total: int) -> None:
        progress((step, total), desc="Denoising", unit="steps")

    return report


def launch(app: gr.Blocks, settings: DemoSettings | None = None, **launch_kwargs):
    """Queue (bounded, with the settings' concurrency) and launch `app`; `launch_kwargs` go to `Blocks.launch`."""
    settings = settings or DemoSettings()
    app.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    return app.launch(
        max_file_size=settings.max_upload_mb * 1024 * 1024,
        theme=gr.themes.Soft(),
        css=CSS,
        **launch_kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_arguments(parser)
    args = parser.parse_args(argv)
    run(args)


def run(args: argparse.Namespace) -> None:
    """Build and serve the app from parsed `add_demo_arguments` options (`unimedvl demo` calls this too)."""
    logging.basicConfig(level=logging.WARNING)
    settings = settings_from_args(args)
    app = build_app(settings=settings)
    launch(app, settings, server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
