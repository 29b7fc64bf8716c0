"""Shared machinery for servings that talk HTTP to OpenAI-compatible APIs.

- :class:`HTTPConnection` + :func:`endpoint_options`: one connection to an endpoint (base URL, key
  lookup, concurrency, rpm, timeout, retries, uploads) and its options, which a serving composes;
- :class:`OpenAICompatibleServing` + :func:`http_options`: the base of servings that only talk HTTP
  (``--model`` plus the connection's options);
- :class:`RequestEngine`: bounded concurrency, rate limit, per-attempt timeout, retries with
  exponential backoff and full jitter honouring ``Retry-After``, on one background event loop;
- :func:`normalize_base_url`, :func:`make_client`: endpoint joining and client construction;
- :mod:`pixmill.http.chat`, :mod:`pixmill.http.media`: chat messages and images on the wire.

Nothing here imports ``openai`` at import time. Its dependencies are the core's ``http`` extra
(``pip install "pixmill[http]"``), which the HTTP plugins require.
"""

from __future__ import annotations

from typing import Any

from .client import make_client
from .connection import DEFAULT_BASE_URL, HTTPConnection, endpoint_options
from .errors import RequestError, ResponseTooLarge, TransientError, is_transient, retry_after
from .serving import OpenAICompatibleServing, http_options
from .urls import normalize_base_url, redact_url

__all__ = ["DEFAULT_BASE_URL", "HTTPConnection", "OpenAICompatibleServing", "RequestEngine", "RequestError",
           "ResponseTooLarge", "TransientError", "endpoint_options", "http_options", "is_transient", "make_client",
           "normalize_base_url", "redact_url", "retry_after"]


def __getattr__(name: str) -> Any:
    # The engine pulls in asyncio: imported on first use, not by every plugin that declares a serving.
    if name == "RequestEngine":
        from .engine import RequestEngine

        return RequestEngine
    raise AttributeError(name)
