"""Fetching images that an API answers with as URLs (DALL-E ``url`` responses, hosted results)."""

from __future__ import annotations

from typing import Any

from pixmill.http import RequestError, TransientError
from pixmill.http.client import check_length
from pixmill.http.errors import TRANSIENT_STATUSES, ResponseTooLarge
from pixmill.http.media import decode_data_url

MAX_IMAGE_BYTES = 64 * 1024 * 1024


def make_download_client(timeout: float | None) -> Any:
    """A plain HTTP client for image URLs: never sends the API key (URLs are often signed links
    on another host, which must not see it)."""
    import httpx2

    return httpx2.AsyncClient(timeout=timeout, follow_redirects=True)


async def fetch_image(client: Any, url: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes behind an image URL (``data:`` URLs decoded in place), streamed and abandoned as
    soon as they pass ``max_bytes`` (:class:`ResponseTooLarge`, never retried).

    A connection problem or a 5xx is transient (the request is retried); a 4xx (an expired link)
    fails the request.
    """
    if url.startswith("data:"):
        data = decode_data_url(url)
        if data is None:
            raise RequestError("the answer holds a corrupt data: URL")
        return data
    import httpx2

    what = "the image at the answer's URL"
    try:
        async with client.stream("GET", url) as response:
            if response.status_code in TRANSIENT_STATUSES:
                raise TransientError(f"downloading the image failed: HTTP {response.status_code}")
            if response.status_code >= 400:
                raise RequestError(f"downloading the image failed: HTTP {response.status_code}",
                                   status=response.status_code)
            check_length(response, max_bytes, what)
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise ResponseTooLarge(what, max_bytes)
                chunks.append(chunk)
    except httpx2.TransportError as exc:
        raise TransientError(f"downloading the image failed: {type(exc).__name__}") from None
    return b"".join(chunks)
