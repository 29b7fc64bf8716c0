"""The async request engine: bounded concurrency, rate limit, timeout and retries for HTTP calls.

Every HTTP serving (OpenAI-compatible image, chat and judge backends) runs its requests through one
:class:`RequestEngine`, so they all behave the same under load and under faults.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from concurrent.futures import Future
from typing import Awaitable, Callable, Iterable, Sequence, TypeVar, Union

from .. import interrupt
from .errors import RequestError, describe, is_transient, retry_after, status_of, too_large_cause
from .loop import get_loop
from .ratelimit import RateLimiter

log = logging.getLogger("pixmill.http")

T = TypeVar("T")
RequestFactory = Callable[[], Awaitable[T]]


class RequestEngine:
    """Runs request coroutines on the shared background loop.

    - at most ``concurrency`` requests in flight (an :class:`asyncio.Semaphore`);
    - at most ``rpm`` attempts started per minute (``None``: no limit);
    - each attempt bounded by ``timeout`` seconds in total;
    - transient failures (429, 5xx, timeouts, connection errors, malformed bodies) retried up to
      ``max_retries`` times with exponential backoff and full jitter, or after the server's
      ``Retry-After`` when it sends one; the slot is released while waiting;
    - a permanent failure (400, refusal, auth) is not retried: the request fails with
      :class:`RequestError` carrying the status and the provider's message.

    ``secrets`` are scrubbed from every error message (some providers echo the key they got).
    A request is a zero-argument factory returning a fresh coroutine, so each attempt is a new call.

    After Ctrl-C (see :mod:`pixmill.interrupt`) no attempt starts, retries included, and requests
    still in flight when the grace period ends are cancelled; both raise
    :class:`~pixmill.interrupt.Interrupted`, never a row failure.
    """

    def __init__(self, concurrency: int = 8, rpm: float | None = None, timeout: float | None = 120.0,
                 max_retries: int = 5, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 secrets: Sequence[str] = (), name: str = "http"):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = int(concurrency)
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.name = name
        self._secrets = [s for s in secrets if s]
        self._limiter = RateLimiter(rpm)
        self._loop = get_loop()
        self._sem: asyncio.Semaphore | None = None
        self._random = random.Random()
        self.stats = {"attempts": 0, "retries": 0, "failed": 0, "succeeded": 0}
        self._in_flight: set[Future] = set()
        self._in_flight_lock = threading.Lock()
        interrupt.register_canceller(self)

    # -- submitting ---------------------------------------------------------------------------
    def submit(self, factory: RequestFactory[T]) -> Future[T]:
        """Schedule one request; the future gives its result or raises :class:`RequestError`."""
        interrupt.raise_if_requested()
        future = asyncio.run_coroutine_threadsafe(self.call(factory), self._loop)
        with self._in_flight_lock:
            self._in_flight.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(future)

    def cancel_in_flight(self) -> None:
        """Cancel every request of this engine still running (called on a hard interrupt)."""
        with self._in_flight_lock:
            futures = list(self._in_flight)
        for future in futures:
            future.cancel()

    def run_all(self, factories: Iterable[RequestFactory[T]]) -> list[Union[T, Exception]]:
        """Run requests concurrently and wait for all: one result or ``Exception`` each, in order."""
        futures = [self.submit(f) for f in factories]
        out: list[Union[T, Exception]] = []
        try:
            for fut in futures:
                try:
                    out.append(fut.result())
                except concurrent.futures.CancelledError:
                    raise interrupt.Interrupted() from None
                except Exception as exc:  # noqa: BLE001 - one request's failure is that request's entry
                    out.append(exc)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return out

    # -- one request --------------------------------------------------------------------------
    async def call(self, factory: RequestFactory[T]) -> T:
        """Run one request with the engine's limits, retrying transient failures."""
        if self._sem is None:  # created on the loop that uses it
            self._sem = asyncio.Semaphore(self.concurrency)
        attempt = 0
        while True:
            attempt += 1
            # On the loop, an interrupt surfaces as cancellation (a KeyboardInterrupt raised in a
            # task would stop the loop itself); run_all turns it into Interrupted for the caller.
            if interrupt.requested():
                raise asyncio.CancelledError()
            await self._limiter.acquire()
            async with self._sem:
                if interrupt.requested():  # Ctrl-C while this request waited for a slot
                    raise asyncio.CancelledError()
                self.stats["attempts"] += 1
                try:
                    if self.timeout:
                        result = await asyncio.wait_for(factory(), self.timeout)
                    else:
                        result = await factory()
                    self.stats["succeeded"] += 1
                    return result
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below
                    error = too_large_cause(exc) or exc
            transient = is_transient(error)
            if not transient or attempt > self.max_retries:
                self.stats["failed"] += 1
                raise self._final_error(error, attempt, transient) from None
            delay = self._delay(error, attempt)
            self.stats["retries"] += 1
            log.info("%s: %s; retry %d/%d in %.2fs", self.name, self._scrub(describe(error)), attempt,
                     self.max_retries, delay)
            await asyncio.sleep(delay)

    def _delay(self, error: BaseException, attempt: int) -> float:
        hinted = retry_after(error)
        if hinted is not None:
            # The server said when: wait that long, plus a little jitter so that every request told
            # "retry after 1s" does not come back in the same millisecond.
            return hinted + self._random.uniform(0, min(0.1 * hinted + 0.01, 1.0))
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^(n-1))].
        return self._random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _final_error(self, error: BaseException, attempts: int, transient: bool) -> RequestError:
        if isinstance(error, RequestError):
            error.attempts = attempts
            return error
        text = self._scrub(describe(error))
        if transient:
            text = f"{text} (gave up after {attempts} attempts)"
        return RequestError(text, status=status_of(error), attempts=attempts, transient=transient)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

