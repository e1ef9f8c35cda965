# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Processor for UniMedVL: the Qwen2 tokenizer, [`UniMedVLImageProcessor`] and a chat template that reproduces the
release's token layout exactly.

The release has no roles and no chat template: every text segment is encoded on its own and wrapped as
`<|im_start|>` text `<|im_end|>`, every image is its own block `<|vision_start|>` patches `<|vision_end|>`, and answers
are decoded after a fresh `<|im_start|>`. The template below renders exactly that (a message's `role` only decides
whether its text is marked as model output for training masks).
"""

import os

from transformers import AutoTokenizer
from transformers.processing_utils import ProcessorMixin

from .image_processing_unimedvl import UniMedVLImageProcessor
from .medical_io import load_images
from .original_checkpoint import check_checkpoint_folder, resolve_original_checkpoint


# System prompt of the release's "think" mode for understanding (used verbatim: token parity depends on it).
UNDERSTANDING_THINK_PROMPT = (
    "You should first think about the reasoning process in the mind and then provide the user with the answer.\n"
    "The reasoning process is enclosed within <think> </think> tags, i.e. <think> reasoning process here </think> "
    "answer here"
)

# Image-processor options that decide how medical files are read (see `medical_io.load_image`).
READING_OPTIONS = ("frame_index", "slice_index", "window")

# `{% generation %}` marks assistant text so `return_assistant_tokens_mask=True` can build training labels.
CHAT_TEMPLATE = (
    "{%- if think is defined and think -%}"
    "{{ '<|im_start|>' + think_prompt + '<|im_end|>' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set contents = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] -%}"
    "{%- for item in contents -%}"
    "{%- if item['type'] == 'image' -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' and message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>' }}{% generation %}{{ item['text'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- elif item['type'] == 'text' -%}"
    "{{ '<|im_start|>' + item['text'] + '<|im_end|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>' }}"
    "{%- endif -%}"
)


class UniMedVLProcessor(ProcessorMixin):
    r"""
    Builds UniMedVL inputs from chat messages or from text with `<|image_pad|>` placeholders.

    ```python
    >>> inputs = processor.apply_chat_template(
    ...     [{"role": "user", "content": [{"type": "image", "image": "scan.dcm"}, {"type": "text", "text": "Which organ?"}]}],
    ...     add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
    ... )
    >>> model.generate(**inputs, max_new_tokens=64)
    ```

    Each image placeholder is expanded to one `<|image_pad|>` per ViT patch. Pass `think=True` to
    `apply_chat_template` to prepend the release's reasoning system prompt.

    Args:
        image_processor ([`UniMedVLImageProcessor`]): resizing, normalisation and patchification.
        tokenizer ([`Qwen2Tokenizer`]): the release's tokenizer (left padding for batched generation).
        chat_template (`str`, *optional*): defaults to the release layout described above.
    """

    image_token = "<|image_pad|>"
    latent_token = "<|vision_pad|>"
    vision_start_token = "<|vision_start|>"
    vision_end_token = "<|vision_end|>"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE, **kwargs)
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.latent_token_id = tokenizer.convert_tokens_to_ids(self.latent_token)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load from our HF layout or from the ORIGINAL release layout (tokenizer files only; the image processor and
        chat template then take the release defaults)."""
        check_checkpoint_folder(
            os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder") or ""),
            hf_layout_files=("processor_config.json", "tokenizer_config.json"),
        )
        original = resolve_original_checkpoint(pretrained_model_name_or_path, weights=False, **kwargs)
        if original is not None:
            tokenizer = AutoTokenizer.from_pretrained(original, padding_side="left")
            return cls(image_processor=UniMedVLImageProcessor(), tokenizer=tokenizer)
        # Our own image processor class rather than the Auto API: a checkpoint's copy of this code then finds its sibling
        # without `trust_remote_code` (diffusers loads the `processor` component of a converted pipeline that way).
        processor_dict, _ = cls.get_processor_dict(pretrained_model_name_or_path, **kwargs)
        image_processor = UniMedVLImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=processor_dict.get("chat_template"))

    def __call__(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """Like [`ProcessorMixin.__call__`]; `frame_index`, `slice_index` and `window` (flat or in `images_kwargs`)
        choose how DICOM / NIfTI / 16-bit images are read."""
        # transformers reads images before it routes keyword arguments, which would drop these options: read the
        # images here with them, then pass `None` so that the already-read RGB images are not windowed again.
        images_kwargs = dict(kwargs.pop("images_kwargs", None) or {})
        reading = {
            key: kwargs.pop(key, images_kwargs.pop(key, getattr(self.image_processor, key, None)))
            for key in READING_OPTIONS
        }
        if images is not None:
            images = load_images(images, **reading)
        if images_kwargs:
            kwargs["images_kwargs"] = images_kwargs
        kwargs.update(dict.fromkeys(READING_OPTIONS))
        return super().__call__(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        if kwargs.get("think"):
            kwargs.setdefault("think_prompt", UNDERSTANDING_THINK_PROMPT)
        return super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        rows, cols = (int(v) for v in image_inputs["image_grid_hw"][image_idx])
        return self.image_token * (rows * cols)

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens=True, **kwargs):
        """Decode generated ids (new tokens only) to answer strings."""
        return self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)


__all__ = ["UniMedVLProcessor", "CHAT_TEMPLATE", "UNDERSTANDING_THINK_PROMPT"]
