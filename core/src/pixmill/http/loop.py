"""One background asyncio event loop per process, shared by every HTTP serving.

Batch methods of servings are synchronous (the executor calls them from worker threads); they hand
their requests to this loop with :func:`asyncio.run_coroutine_threadsafe` and wait. One loop for the
whole process keeps every connection pool and semaphore on the same loop, whatever thread submits.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's background loop, started on first use (a daemon thread named pixmill-http)."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="pixmill-http", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait for its result (from any other thread)."""
    loop = get_loop()
    if _in_loop_thread(loop):
        raise RuntimeError("run_sync() called from the pixmill-http loop itself; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def close_quietly(closing: Coroutine[Any, Any, Any], what: str = "an HTTP client") -> None:
    """Run a client's close coroutine on the background loop. A failure is logged, never raised:
    closing a connection pool must never fail a run."""
    try:
        run_sync(closing, timeout=10)
    except Exception:  # noqa: BLE001 - see above
        logging.getLogger("pixmill.http").debug("closing %s failed", what, exc_info=True)


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


@atexit.register
def _stop() -> None:  # let pending connection cleanups finish quietly at interpreter exit
    loop = _loop
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
