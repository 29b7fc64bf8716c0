"""Chat messages for the in-process engines: one place that turns pixmill messages into a prompt
string plus the row's images, so vLLM and transformers build exactly the same input.

pixmill messages are OpenAI-style; image parts are ``{"type": "image", "image": PIL.Image}`` (or an
:class:`~pixmill.image_files.ImageFile`, decoded here).
For a chat template each image part becomes ``{"type": "image"}`` (the template writes
``<|vision_start|><|image_pad|><|vision_end|>``), and the images are collected in the same order.
Every image of every message is kept: a multi-image row shows the model all of its images.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pixmill.serving import ChatRequest

from .images import fit_pixels

# Qwen2.5-VL's chat format (without the default system prompt), used when a tokenizer carries no
# chat template of its own, and by the tiny test model.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def split_images(messages: list[dict[str, Any]], min_pixels: int, max_pixels: int
                 ) -> tuple[list[dict[str, Any]], list[Any]]:
    """Template-ready messages and the row's images (resized to the bounds), in order."""
    images: list[Any] = []
    out: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, str):
                    parts.append({"type": "text", "text": part})
                elif isinstance(part, dict) and part.get("type") == "image":
                    images.append(fit_pixels(part["image"], min_pixels, max_pixels))
                    parts.append({"type": "image"})
                elif isinstance(part, dict) and part.get("type") == "text":
                    parts.append({"type": "text", "text": str(part.get("text", ""))})
                else:
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise ValueError(f"unsupported message part {kind!r}: use text or image parts")
            content = parts
        out.append({"role": msg.get("role", "user"), "content": content if content is not None else ""})
    return out, images


def render_prompt(template_owner: Any, messages: list[dict[str, Any]]) -> str:
    """The prompt text from a tokenizer's or processor's chat template (Qwen's format if it has none)."""
    if getattr(template_owner, "chat_template", None):  # a string, or a dict of named templates
        return template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return template_owner.apply_chat_template(messages, chat_template=QWEN_CHAT_TEMPLATE, tokenize=False,
                                              add_generation_prompt=True)


def with_defaults(request: ChatRequest, config: dict[str, Any]) -> ChatRequest:
    """The request with the serving's defaults filled in where the operator left them unset."""
    return replace(
        request,
        max_tokens=request.max_tokens if request.max_tokens is not None else config.get("max_tokens"),
        temperature=request.temperature if request.temperature is not None else config.get("temperature"),
    )
