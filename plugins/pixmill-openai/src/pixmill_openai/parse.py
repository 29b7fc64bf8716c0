"""Finding the images in a chat completion, in every shape providers use.

- ``message.images[]``: ``{"type": "image_url", "image_url": {"url": "data:..."}}`` (OpenRouter,
  LiteLLM, Gemini through routers), or ``{"url": ...}`` / ``{"b64_json": ...}``;
- content parts: ``{"type": "image_url", "image_url": {"url": ...}}``, ``{"type": "output_image"}``,
  ``{"inline_data": {"mime_type": ..., "data": ...}}`` (Gemini-shaped proxies);
- the text itself: ``data:image/...;base64,...`` URLs (often in Markdown ``![](...)``), Markdown
  links to image URLs, or a bare base64 block that decodes to an image.

Images are returned in order, without duplicates; URLs are left for the caller to download.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Union

from pixmill.http.media import decode_base64, decode_data_url, sniff_image

ImageRef = Union[bytes, str]  # bytes, or an http(s) URL to fetch

_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=_\-\s]+?(?=[)\s\"'<>\]]|$)")
_MD_IMAGE_URL = re.compile(r"!\[[^\]]*\]\((https?://[^)\s]+)\)")
_BARE_B64 = re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")


def find_images(message: dict[str, Any]) -> tuple[list[ImageRef], str]:
    """``(images, text)`` of an assistant message (a dict, as ``model_dump()`` gives it).

    ``text`` is the message's text with embedded image data removed (what the model "said").
    """
    refs: list[ImageRef] = []
    for item in message.get("images") or []:
        refs += _from_item(item)
    content = message.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if part.get("type") in (None, "text", "output_text") and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                else:
                    refs += _from_item(part)
    said = []
    for text in texts:
        found, rest = _from_text(text)
        refs += found
        said.append(rest)
    return _unique(refs), " ".join(s for s in said if s).strip()


def _from_item(item: Any) -> list[ImageRef]:
    """An entry of ``message.images`` or a non-text content part."""
    if isinstance(item, str):
        return _ref_from_string(item)
    if not isinstance(item, dict):
        return []
    image_url = item.get("image_url")
    if isinstance(image_url, dict):
        return _ref_from_string(image_url.get("url") or "")
    if isinstance(image_url, str):
        return _ref_from_string(image_url)
    for key in ("b64_json", "data", "image_base64", "base64"):
        if isinstance(item.get(key), str):
            data = decode_base64(item[key]) if not item[key].startswith("data:") else decode_data_url(item[key])
            return [data] if data and sniff_image(data) else []
    inline = item.get("inline_data") or item.get("inlineData") or item.get("source")
    if isinstance(inline, dict):
        return _from_item(inline)
    if isinstance(item.get("url"), str):
        return _ref_from_string(item["url"])
    if isinstance(item.get("image"), (str, dict)):
        return _from_item(item["image"])
    return []


def _ref_from_string(value: str) -> list[ImageRef]:
    value = value.strip()
    if value.startswith("data:"):
        data = decode_data_url(value)
        return [data] if data and sniff_image(data) else []
    if value.startswith(("http://", "https://")):
        return [value]
    data = decode_base64(value) if len(value) > 64 else None
    return [data] if data and sniff_image(data) else []


def _from_text(text: str) -> tuple[list[ImageRef], str]:
    refs: list[ImageRef] = []

    def taker(decode: Callable[[str], bytes | None]) -> Callable[[re.Match], str]:
        """A substitution that moves a decodable image out of the text into ``refs``."""
        def take(match: re.Match) -> str:
            data = decode(match.group(0))
            if data and sniff_image(data):
                refs.append(data)
                return ""
            return match.group(0)
        return take

    text = _DATA_URL.sub(taker(decode_data_url), text)
    for match in _MD_IMAGE_URL.finditer(text):
        refs.append(match.group(1))
    text = _MD_IMAGE_URL.sub("", text)

    text = _BARE_B64.sub(taker(decode_base64), text)
    text = re.sub(r"!\[[^\]]*\]\(\s*\)", "", text)  # Markdown shells left by removed data URLs
    return refs, re.sub(r"\s+", " ", text).strip()


def _unique(refs: list[ImageRef]) -> list[ImageRef]:
    seen: set[str] = set()
    out = []
    for ref in refs:
        key = hashlib.sha1(ref).hexdigest() if isinstance(ref, bytes) else ref
        if key not in seen:
            seen.add(key)
            out.append(ref)
    return out


def merge_stream(chunks: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """Rebuild one assistant message from streamed chunks (``model_dump()`` dicts).

    Text deltas are concatenated (base64 split across chunks is whole again), list deltas of
    content parts are appended, and ``images`` deltas are collected. Returns the message and the
    last finish reason.
    """
    text: list[str] = []
    parts: list[Any] = []
    images: list[Any] = []
    finish = None
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str):
                text.append(content)
            elif isinstance(content, list):
                parts += content
            images += delta.get("images") or []
            finish = choice.get("finish_reason") or finish
    content_out: Any = "".join(text)
    if parts:
        content_out = ([{"type": "text", "text": content_out}] if content_out else []) + parts
    return {"role": "assistant", "content": content_out, "images": images}, finish
