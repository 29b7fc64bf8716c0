"""Shared machinery for servings that talk HTTP to OpenAI-compatible APIs.

- :class:`OpenAICompatibleServing` + :func:`http_options`: the base serving (model, base URL, key
  lookup, concurrency, rpm, timeout, retries) that HTTP servings in any plugin build on;
- :class:`RequestEngine`: bounded concurrency, rate limit, per-attempt timeout, retries with
  exponential backoff and full jitter honouring ``Retry-After``, on one background event loop;
- :func:`normalize_base_url`, :func:`make_client`: endpoint joining and client construction;
- :mod:`pixmill.http.chat`, :mod:`pixmill.http.media`: chat messages and images on the wire.

Nothing here imports ``openai`` at import time. Its dependencies are the core's ``http`` extra
(``pip install "pixmill[http]"``), which the HTTP plugins require.
"""

from __future__ import annotations

from .client import make_client
from .engine import RequestEngine
from .errors import RequestError, TransientError, is_transient, retry_after
from .serving import DEFAULT_BASE_URL, OpenAICompatibleServing, http_options
from .urls import normalize_base_url, redact_url

__all__ = ["DEFAULT_BASE_URL", "OpenAICompatibleServing", "RequestEngine", "RequestError", "TransientError",
           "ResponseTooLarge", "http_options", "is_transient", "make_client", "normalize_base_url", "redact_url", "retry_after"]
