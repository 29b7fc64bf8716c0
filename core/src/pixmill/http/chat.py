"""Chat completions over an OpenAI-compatible API: message conversion and text answers.

Shared by every serving that chats through the openai client (text LLMs, VLM judges), so that image
parts, JSON mode and logprobs are converted the same way everywhere.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from ..serving import ChatRequest, ChatResponse
from .body import RequestBody
from .errors import RequestError
from .media import to_data_url
from .uploads import Upload, Uploader, UploadRule, prepare_upload

_DEFAULT_RULE = UploadRule(data_url=True)


def to_openai_messages(messages: list[dict[str, Any]], uploader: Uploader | None = None) -> list[dict[str, Any]]:
    """Convert pixmill chat messages to the OpenAI wire form.

    Image parts ``{"type": "image", "image": ...}`` (an :class:`~pixmill.image_files.ImageFile`, a
    PIL image, or encoded bytes) become separate ``image_url`` parts with a data URL each, in order,
    never a collage; other parts pass through. Image files go through ``uploader`` (as they are when
    its rule allows, else prepared once per file); without one, with the default rule.
    """
    return _convert(messages, uploader, Upload.data_url)


def _convert(messages: list[dict[str, Any]], uploader: Uploader | None,
             url_of: Callable[[Upload], Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            content = [_part(p, uploader, url_of) for p in content]
        out.append({**msg, "content": content})
    return out


def _part(part: Any, uploader: Uploader | None, url_of: Callable[[Upload], Any]) -> Any:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if isinstance(part, dict) and part.get("type") == "image":
        image = part.get("image")
        if isinstance(image, (bytes, bytearray)):
            url = to_data_url(bytes(image))
        elif uploader is not None:
            url = url_of(uploader.prepare(image))
        else:
            url = url_of(prepare_upload(image, _DEFAULT_RULE))
        return {"type": "image_url", "image_url": {"url": url}}
    return part


def chat_body(model: str, request: ChatRequest, json_mode: str = "json_object", top_logprobs: int = 5,
              uploader: Uploader | None = None, extra_body: dict[str, Any] | None = None) -> RequestBody:
    """The JSON body of one chat completion request, for :func:`post_chat`.

    Build it in the calling thread, once per request (retries send the same body): images are
    read and base64-encoded there, and their base64 bytes become pieces of the body as they are,
    never copied into a text form or a joined buffer, so the event loop only sends ready bytes.
    """
    messages = _convert(request.messages, uploader, lambda upload: upload)  # spliced by json_body
    params = _params(request, json_mode, top_logprobs, messages)
    return json_body({**params, "model": model, **(extra_body or {}), **request.extra})


def _params(request: ChatRequest, json_mode: str, top_logprobs: int, messages: list[dict[str, Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {"messages": messages}
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


async def post_chat(client: Any, model: str, body: RequestBody, provenance: dict[str, Any] | None = None
                    ) -> ChatResponse:
    """One chat completion with a text answer (use inside :meth:`RequestEngine.call`): post a
    body made by :func:`chat_body` and read the answer."""
    from openai.types.chat import ChatCompletion

    # Posted as ready JSON pieces: the client's own encoder would re-scan every image's megabytes
    # of base64 character by character (see json_body).
    completion = await client.post("/chat/completions", cast_to=ChatCompletion, content=body,
                                   options={"headers": body.headers()})
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


def json_body(body: dict[str, Any]) -> RequestBody:
    """The JSON of a chat request body, with long ``data:`` URLs spliced in as they are.

    A base64 data URL is already valid JSON string content (no quote, backslash or control
    character), and a 1024 px image makes it megabytes long: encoding it with ``json`` costs tens of
    milliseconds of a core. An image part's URL may also be an
    :class:`~pixmill.http.uploads.Upload` (see :func:`chat_body`): its base64 bytes become a piece
    of the body as they are.
    """
    urls: list[tuple[bytes, ...]] = []

    def swap(part: Any) -> Any:
        url = part.get("image_url", {}).get("url") if isinstance(part, dict) and part.get("type") == "image_url" else None
        if isinstance(url, Upload):
            urls.append(url.data_url_parts())
        elif not isinstance(url, str) or len(url) < _SPLICE_MIN or not url.startswith("data:") or not url.isascii() \
                or '"' in url or "\\" in url:
            return part
        else:
            urls.append((url.encode("ascii"),))
        return {**part, "image_url": {**part["image_url"], "url": f"\x00pixmill-image-{len(urls) - 1}\x00"}}

    messages = [{**m, "content": [swap(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
                for m in body.get("messages", ())]
    data = json.dumps({**body, "messages": messages}, ensure_ascii=False, separators=(",", ":")).encode()
    if not urls:
        return RequestBody([data])
    pieces: list[bytes] = []
    for i, piece in enumerate(_PLACEHOLDER.split(data)):  # text, index, text, index, ..., text
        pieces.extend(urls[int(piece)] if i % 2 else (piece,))
    return RequestBody(pieces)


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
