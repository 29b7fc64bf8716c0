"""Building the openai client for an OpenAI-compatible endpoint (imported lazily)."""

from __future__ import annotations

import logging
from typing import Any

from .errors import ResponseTooLarge
from .urls import normalize_base_url, split_query

_QUIETED = False


DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024**2


def make_client(base_url: str, api_key: str, timeout: float | None = None, concurrency: int = 8,
                default_headers: dict[str, str] | None = None,
                max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES) -> Any:
    """An ``openai.AsyncOpenAI`` for ``base_url`` with the client's own retries disabled.

    Retries, backoff and rate limiting belong to :class:`pixmill.http.RequestEngine`: two retry
    layers would multiply attempts and ignore each other's backoff. The connection pool is sized to
    the concurrency so that requests never queue inside the client. An answer body over
    ``max_response_bytes`` is abandoned as it streams in (:class:`ResponseTooLarge`), so a broken
    or hostile endpoint cannot exhaust memory.
    """
    import httpx2
    import openai

    _quiet_http_logs()
    limits = httpx2.Limits(max_connections=max(concurrency, 1) * 2, max_keepalive_connections=max(concurrency, 1))
    hooks = {"request": [_send_multipart_whole], "response": [_capped(max_response_bytes)] if max_response_bytes else []}
    # aiohttp under the openai client (its documented `openai[aiohttp]` transport): with its C HTTP
    # parser and plain asyncio writes, judging a 1024 px image took 4.4 ms of client CPU instead of
    # 7.2 ms on httpx's own transport, and the client's CPU is what bounds thousands of large
    # uploads (docs/benchmarks.md).
    http_client = openai.DefaultAioHttpClient(limits=limits, timeout=timeout, follow_redirects=True, event_hooks=hooks)
    root, query = split_query(normalize_base_url(base_url))
    return openai.AsyncOpenAI(base_url=root, api_key=api_key, max_retries=0, timeout=timeout,
                              http_client=http_client, default_headers=default_headers, default_query=query or None)


def _quiet_http_logs() -> None:
    # httpx logs one INFO line per request ("HTTP Request: POST ..."); at thousands of requests that
    # buries pixmill's own progress. Keep its warnings; a user who wants the lines sets the level.
    global _QUIETED
    if _QUIETED:
        return
    for name in ("httpx", "httpx2", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    _QUIETED = True


def capped_stream(stream: Any, limit: int, what: str) -> Any:
    """An httpx byte stream that raises :class:`ResponseTooLarge` once more than ``limit`` bytes
    have come in (before they pile up in memory)."""
    import httpx2

    class CappedStream(httpx2.AsyncByteStream):
        async def __aiter__(self) -> Any:
            total = 0
            async for chunk in stream:
                total += len(chunk)
                if total > limit:
                    raise ResponseTooLarge(what, limit)
                yield chunk

        async def aclose(self) -> None:
            await stream.aclose()

    return CappedStream()


def check_length(response: Any, limit: int, what: str) -> None:
    """Refuse a response whose declared Content-Length is over ``limit`` before reading it."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(what, limit)


async def _send_multipart_whole(request: Any) -> None:
    """Read a multipart body (an image edit) into one buffer before it is sent. httpx streams it as
    dozens of small chunks, one per field header, boundary and value, each its own socket write and
    packet; one write costs far less CPU at high concurrency. Other bodies go as they are: bytes in
    one write, a :class:`~pixmill.http.body.RequestBody` in its large slices, never joined."""
    if request.headers.get("content-type", "").startswith("multipart/"):
        await request.aread()


def _capped(limit: int) -> Any:
    """A response hook that abandons an answer over ``limit`` bytes: at once when its
    Content-Length says so, else as it streams in."""

    async def cap(response: Any) -> None:
        try:
            check_length(response, limit, "the API's answer")
        except ResponseTooLarge:
            await response.aclose()
            raise
        response.stream = capped_stream(response.stream, limit, "the API's answer")
    return cap
