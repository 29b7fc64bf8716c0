"""Chat completions over an OpenAI-compatible API: message conversion and text answers.

Shared by every serving that chats through the openai client (text LLMs, VLM judges), so that image
parts, JSON mode and logprobs are converted the same way everywhere.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..serving import ChatRequest, ChatResponse
from .errors import RequestError
from .media import to_data_url
from .uploads import Uploader, UploadRule, prepare_upload

_DEFAULT_RULE = UploadRule(data_url=True)


def to_openai_messages(messages: list[dict[str, Any]], uploader: Uploader | None = None) -> list[dict[str, Any]]:
    """Convert pixmill chat messages to the OpenAI wire form.

    Image parts ``{"type": "image", "image": ...}`` (an :class:`~pixmill.image_files.ImageFile`, a
    PIL image, or encoded bytes) become separate ``image_url`` parts with a data URL each, in order,
    never a collage; other parts pass through. Image files go through ``uploader`` (as they are when
    its rule allows, else prepared once per file); without one, with the default rule.
    """
    out: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            content = [_part(p, uploader) for p in content]
        out.append({**msg, "content": content})
    return out


def _part(part: Any, uploader: Uploader | None) -> Any:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if isinstance(part, dict) and part.get("type") == "image":
        image = part.get("image")
        if isinstance(image, (bytes, bytearray)):
            url = to_data_url(bytes(image))
        elif uploader is not None:
            url = uploader.prepare(image).data_url()
        else:
            url = prepare_upload(image, _DEFAULT_RULE).data_url()
        return {"type": "image_url", "image_url": {"url": url}}
    return part


def chat_params(request: ChatRequest, json_mode: str = "json_object", top_logprobs: int = 5,
                uploader: Uploader | None = None) -> dict[str, Any]:
    """Keyword arguments for ``chat.completions.create`` from a :class:`ChatRequest`."""
    params: dict[str, Any] = {"messages": to_openai_messages(request.messages, uploader)}
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.json and json_mode == "json_object":
        params["response_format"] = {"type": "json_object"}
    if request.logprobs:
        params["logprobs"] = True
        params["top_logprobs"] = top_logprobs
    return params


async def complete_chat(client: Any, model: str, request: ChatRequest, json_mode: str = "json_object",
                        extra_body: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None
                        ) -> ChatResponse:
    """One chat completion with a text answer (use inside :meth:`RequestEngine.call`)."""
    body = {**(extra_body or {}), **request.extra}
    return await send_chat(client, model, chat_params(request, json_mode), body, provenance)


async def send_chat(client: Any, model: str, params: dict[str, Any], extra_body: dict[str, Any] | None = None,
                    provenance: dict[str, Any] | None = None) -> ChatResponse:
    """Like :func:`complete_chat` with the parameters already built by :func:`chat_params` (build
    them in the calling thread: encoding images there keeps the event loop free for I/O)."""
    from openai.types.chat import ChatCompletion

    body = {**params, "model": model, **(extra_body or {})}
    # Posted as ready JSON bytes: the client's own encoder would re-scan every image's megabytes
    # of base64 character by character (see json_body).
    completion = await client.post("/chat/completions", cast_to=ChatCompletion, content=json_body(body))
    choices = getattr(completion, "choices", None)
    if not choices:
        raise RequestError(f"the response has no choices (model {model})")
    choice = choices[0]
    text = _text_of(choice.message.content)
    if choice.finish_reason == "content_filter":
        raise RequestError(f"refused by the provider's content filter (model {model}){': ' + text if text else ''}")
    if not text:
        raise RequestError(f"empty answer (model {model}, finish_reason {choice.finish_reason})")
    return ChatResponse(text=text, logprobs=_logprobs(choice), params={
        **(provenance or {}), "model": getattr(completion, "model", None) or model,
        "finish_reason": choice.finish_reason, "request_id": getattr(completion, "id", None)})


_SPLICE_MIN = 4096  # data URLs shorter than this are simply encoded
_PLACEHOLDER = re.compile(rb"\\u0000pixmill-image-(\d+)\\u0000")


def json_body(body: dict[str, Any]) -> bytes:
    """The JSON bytes of a chat request body, with long ``data:`` URLs spliced in as they are.

    A base64 data URL is already valid JSON string content (no quote, backslash or control
    character), and a 1024 px image makes it megabytes long: encoding it with ``json`` costs tens of
    milliseconds of the one core that runs the event loop, splicing it costs a copy.
    """
    urls: list[str] = []

    def swap(part: Any) -> Any:
        url = part.get("image_url", {}).get("url") if isinstance(part, dict) and part.get("type") == "image_url" else None
        if not isinstance(url, str) or len(url) < _SPLICE_MIN or not url.startswith("data:") or not url.isascii() \
                or '"' in url or "\\" in url:
            return part
        urls.append(url)
        return {**part, "image_url": {**part["image_url"], "url": f"\x00pixmill-image-{len(urls) - 1}\x00"}}

    messages = [{**m, "content": [swap(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
                for m in body.get("messages", ())]
    data = json.dumps({**body, "messages": messages}, ensure_ascii=False, separators=(",", ":")).encode()
    if not urls:
        return data
    pieces = _PLACEHOLDER.split(data)  # text, index, text, index, ..., text
    for i in range(1, len(pieces), 2):
        pieces[i] = urls[int(pieces[i])].encode("ascii")
    return b"".join(pieces)


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") if isinstance(p, dict) else getattr(p, "text", "") for p in content]
    return "".join(p for p in parts if p)


def _logprobs(choice: Any) -> list[dict[str, float]] | None:
    lp = getattr(choice, "logprobs", None)
    tokens = getattr(lp, "content", None) if lp is not None else None
    if not tokens:
        return None
    out: list[dict[str, float]] = []
    for tok in tokens:
        top = {t.token: float(t.logprob) for t in (getattr(tok, "top_logprobs", None) or [])}
        top.setdefault(tok.token, float(tok.logprob))
        out.append(top)
    return out
