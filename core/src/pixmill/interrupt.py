"""Ctrl-C while a step runs: stop starting work, keep what arrives, then stop for good.

The first Ctrl-C (SIGINT) does not raise at once. It marks the run as interrupted: no new batch is
handed to an executor and no new HTTP request starts (retries included), while the batches and
requests already in flight may finish for a short grace period (``PIXMILL_INTERRUPT_GRACE``
seconds, default 10) and are committed as usual. When the grace period ends, or at a second
Ctrl-C, in-flight requests are cancelled and :class:`KeyboardInterrupt` is raised in the main
thread; the runner commits what it has and the CLI exits with code 130. Nothing that did not
finish is recorded as failed: a rerun of the same command does it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

log = logging.getLogger("pixmill.interrupt")

T = TypeVar("T")
DEFAULT_GRACE_SECONDS = 10.0
MESSAGE = "Interrupted: committed work is kept; rerun the same command to resume."

_requested = threading.Event()
_cancelled = threading.Event()
_cancellers: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """Raised where work was refused or cancelled because of an interrupt. A ``KeyboardInterrupt``,
    so no layer that records per-row failures (they catch ``Exception``) mistakes it for the row's
    fault."""


def requested() -> bool:
    """Whether the user asked the run to stop (new work must not start)."""
    return _requested.is_set()


def cancelled() -> bool:
    """Whether in-flight work must be abandoned now (grace period over, or a second Ctrl-C)."""
    return _cancelled.is_set()


def grace_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("PIXMILL_INTERRUPT_GRACE", DEFAULT_GRACE_SECONDS)))
    except ValueError:
        return DEFAULT_GRACE_SECONDS


def register_canceller(owner: object) -> None:
    """``owner.cancel_in_flight()`` is called when in-flight work must be abandoned (held weakly)."""
    _cancellers.add(owner)


def cancel_in_flight() -> None:
    """Abandon in-flight work everywhere (idempotent)."""
    _requested.set()
    _cancelled.set()
    with _lock:
        owners = list(_cancellers)
    for owner in owners:
        try:
            owner.cancel_in_flight()
        except Exception:  # noqa: BLE001 - cancelling is best effort; the process is stopping
            log.debug("cancelling in-flight work of %r failed", owner, exc_info=True)


def until_requested(items: Iterable[T]) -> Iterator[T]:
    """``items`` until an interrupt is requested: executors pull batches through this, so after
    Ctrl-C none of them starts another batch."""
    for item in items:
        if _requested.is_set():
            return
        yield item
        if _requested.is_set():
            return


def raise_if_requested() -> None:
    if _requested.is_set():
        raise Interrupted()


def reset() -> None:
    """Forget an interrupt (a new run in the same process, e.g. the Python API after Ctrl-C)."""
    _requested.clear()
    _cancelled.clear()


@contextmanager
def graceful() -> Iterator[None]:
    """Handle SIGINT as described in the module docstring while the block runs (main thread only;
    elsewhere Ctrl-C keeps Python's default behaviour)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()
    timer: list[threading.Timer] = []

    def hard_stop() -> None:
        cancel_in_flight()
        import _thread

        _thread.interrupt_main()  # runs `handler` below in the main thread, which raises

    def handler(signum: int, frame: object) -> None:
        if _requested.is_set():
            cancel_in_flight()
            raise Interrupted()
        _requested.set()
        grace = grace_seconds()
        log.warning("interrupted: no new work starts; waiting up to %.0fs for work in flight "
                    "(press Ctrl-C again to stop now)", grace)
        t = threading.Timer(grace, hard_stop)
        t.daemon = True
        t.start()
        timer.append(t)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for t in timer:
            t.cancel()
