"""Fetching images that an API answers with as URLs (DALL-E ``url`` responses, hosted results)."""

from __future__ import annotations

from typing import Any

from pixmill.http import RequestError, TransientError
from pixmill.http.errors import TRANSIENT_STATUSES
from pixmill.http.media import decode_data_url

MAX_IMAGE_BYTES = 64 * 1024 * 1024


def make_download_client(timeout: float | None) -> Any:
    """A plain HTTP client for image URLs: never sends the API key (URLs are often signed links
    on another host, which must not see it)."""
    import httpx2

    return httpx2.AsyncClient(timeout=timeout, follow_redirects=True)


async def fetch_image(client: Any, url: str) -> bytes:
    """The bytes behind an image URL (``data:`` URLs decoded in place).

    A connection problem or a 5xx is transient (the request is retried); a 4xx (an expired link)
    fails the request.
    """
    if url.startswith("data:"):
        data = decode_data_url(url)
        if data is None:
            raise RequestError("the answer holds a corrupt data: URL")
        return data
    import httpx2

    try:
        response = await client.get(url)
    except httpx2.TransportError as exc:
        raise TransientError(f"downloading the image failed: {type(exc).__name__}") from None
    if response.status_code in TRANSIENT_STATUSES:
        raise TransientError(f"downloading the image failed: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise RequestError(f"downloading the image failed: HTTP {response.status_code}", status=response.status_code)
    data = response.content
    if len(data) > MAX_IMAGE_BYTES:
        raise RequestError(f"the image at the answer's URL is larger than {MAX_IMAGE_BYTES >> 20} MiB")
    return data
