"""How a failed HTTP attempt is classified, and the error a request finally fails with.

Classification is duck-typed (``status_code``, ``response.headers``) so that any client built on
httpx/httpx2 (the openai client and others) is handled the same way, without importing it here.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..errors import RowError

# Statuses worth retrying: rate limits, timeouts and server-side trouble. Everything else in 4xx
# (bad request, refusal, auth, not found) fails the same way every time.
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
MAX_RETRY_AFTER = 120.0


class TransientError(Exception):
    """Raise from a request coroutine for a response worth retrying (a malformed or truncated body)."""


class RequestError(RowError):
    """A request that failed for good: a permanent error, or retries exhausted.

    ``str()`` is one line with the HTTP status (when there was one) and the provider's message, which
    is what the row's failure reason shows (a :class:`~pixmill.errors.RowError`: see
    :func:`pixmill.errors.failure_reason`). ``status`` is ``None`` for timeouts and connection errors.
    """

    def __init__(self, message: str, status: int | None = None, attempts: int = 1, transient: bool = False):
        self.status = status
        self.attempts = attempts
        self.transient = transient
        super().__init__(message)


class ResponseTooLarge(RequestError):
    """An answer or download larger than the serving's cap (``--max-response-mb``): never retried,
    since the same request gets the same answer."""

    def __init__(self, what: str, limit: int):
        super().__init__(f"{what} is larger than {limit / 1024**2:g} MiB; raise --max-response-mb if this is expected")


def too_large_cause(exc: BaseException) -> ResponseTooLarge | None:
    """The :class:`ResponseTooLarge` behind ``exc``, if any: the openai client wraps errors raised
    while it reads a body in its own connection error, which would otherwise look transient."""
    found = _in_chain(exc, lambda e: isinstance(e, ResponseTooLarge))
    return found if isinstance(found, ResponseTooLarge) else None


def connection_cause(exc: BaseException) -> BaseException | None:
    """The aiohttp connection error behind ``exc`` (refused, reset, dropped mid-answer), if any.
    The aiohttp transport hands every one of them to the openai client as httpx's
    ``ConnectTimeout``, so without this a wrong port or a crashed server would read "timed out"."""
    return _in_chain(exc, lambda e: type(e).__module__.startswith("aiohttp") and "Timeout" not in type(e).__name__)


def _in_chain(exc: BaseException, wanted: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception in ``exc``'s chain of causes (``exc`` included) that is ``wanted``."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if wanted(current):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: 429/5xx, timeouts, connection errors, malformed bodies."""
    if isinstance(exc, TransientError):
        return True
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUSES
    if _timed_out(exc) or isinstance(exc, ConnectionError):
        return True
    # The openai client's APIConnectionError/APITimeoutError, httpx's TransportError, and a 200 whose
    # body is not valid JSON (json.JSONDecodeError raised while parsing): all worth another try.
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"APIConnectionError", "APITimeoutError", "TransportError", "TimeoutException",
                         "JSONDecodeError", "APIResponseValidationError", "RemoteProtocolError"})


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` / ``retry-after-ms``), capped, or ``None``."""
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return min(max(float(ms) / 1000.0, 0.0), MAX_RETRY_AFTER)
        value = headers.get("retry-after")
    except Exception:  # noqa: BLE001 - an odd header object: no hint
        return None
    if value is None:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils

        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _timed_out(exc: BaseException) -> bool:
    import asyncio  # loaded already wherever requests run; not with this module (pixmill --help)

    return isinstance(exc, (asyncio.TimeoutError, TimeoutError))  # one class from Python 3.11 on


def describe(exc: BaseException) -> str:
    """One line for a failed attempt: ``HTTP 400: <provider message>``, ``timed out``, ..."""
    status = status_of(exc)
    message = _provider_message(exc)
    if status is not None:
        return f"HTTP {status}: {message}" if message else f"HTTP {status}"
    cause = connection_cause(exc)
    if cause is not None:
        detail = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else ""
        return f"connection failed: {type(cause).__name__}" + (f": {detail}" if detail else "")
    if _timed_out(exc) or "Timeout" in type(exc).__name__:
        return "request timed out"
    if isinstance(exc, (TransientError, RequestError)):
        return str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _provider_message(exc: BaseException) -> str:
    # The openai client keeps the decoded JSON body; {"error": {"message": ...}} is the usual shape.
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            code = err.get("code") or err.get("type")
            if msg:
                return f"{msg} ({code})" if code and str(code) not in str(msg) else str(msg)
        elif isinstance(err, str):
            return err
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0][:500] if text else ""
