"""Base-URL normalisation for OpenAI-compatible endpoints.

Users paste endpoints in every shape: ``https://host``, ``https://host/``, ``https://host/v1``,
``https://host/v1/``, a provider's own prefix (Gemini's ``.../v1beta/openai/``, OpenRouter's
``.../api/v1``) or even a full endpoint (``.../v1/chat/completions``). The client appends
``/chat/completions`` and friends itself, so the base must end at the API root: one ``/v1`` when the
URL has no path, never ``/v1/v1``, and any other path kept as the provider wrote it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import ConfigError

# Endpoint paths a user may have pasted after the API root; they are cut off.
_ENDPOINT_SUFFIXES = ("/chat/completions", "/images/generations", "/images/edits", "/completions",
                      "/embeddings", "/responses", "/models")


def normalize_base_url(url: str) -> str:
    """The API root for ``url``, without a trailing slash.

    >>> normalize_base_url("https://api.openai.com")
    'https://api.openai.com/v1'
    >>> normalize_base_url("http://localhost:8000/v1/")
    'http://localhost:8000/v1'
    >>> normalize_base_url("https://generativelanguage.googleapis.com/v1beta/openai/")
    'https://generativelanguage.googleapis.com/v1beta/openai'
    """
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base URL {text!r} is not an http(s) URL",
                          "pass --base-url like https://api.openai.com/v1 or http://127.0.0.1:8000")
    path = parts.path.rstrip("/")
    for suffix in _ENDPOINT_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    while path.endswith("/v1/v1"):
        path = path[: -len("/v1")]
    if not path:
        path = "/v1"  # a bare host: OpenAI-compatible servers (OpenAI, vLLM, LiteLLM) serve under /v1
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def redact_url(url: str) -> str:
    """``url`` without user info or query string (either can carry a credential), for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """``(url without its query string, the query's parameters)``.

    Some providers put required parameters in the base URL (Azure's ``?api-version=...``). The
    client appends endpoint paths to the base URL, so the query must travel separately, on every
    request, or the paths land inside it and every request 404s.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), query
