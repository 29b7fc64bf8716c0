"""One process pool per process for CPU-bound work on files (decoding, hashing, encoding images),
so that work written in Python with PIL runs on every core instead of one core behind the GIL.

The pool is forked on Linux, one worker per core, made on first use and shared by whoever needs it
(upload preparation, image hashing). There is none on a single core (a hop to another process would
only add cost) or where ``fork`` is missing: callers then do the work in their own threads.
Functions sent to it must be importable top-level functions that only read files and compute
(PIL, numpy, hashlib): a forked child must not touch the parent's threads, locks or models.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # the process machinery is imported when a pool is made, not with this module
    from concurrent.futures import ProcessPoolExecutor

log = logging.getLogger("pixmill.cpu_pool")

_lock = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_POOL_PID = 0


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_pool() -> ProcessPoolExecutor | None:
    """The process's pool (one worker per core), or ``None`` where it would not help (one core) or
    could not be made safely (no ``fork``)."""
    global _POOL, _POOL_PID
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = cores()
    if n < 2 or sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return None
    with _lock:
        if _POOL is None or _POOL_PID != os.getpid():
            # fork, not spawn or forkserver: those import the user's main script again in every
            # worker (running an unguarded pipeline script twice). The workers only read files and
            # compute, with libraries whose locks CPython and glibc reset in a forked child.
            _POOL = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork"),
                                        initializer=_start_worker)
            if not _POOL_PID:
                atexit.register(_close_at_exit)
            _POOL_PID = os.getpid()
            log.debug("cpu pool: %d worker processes", n)
        return _POOL


def _close_at_exit() -> None:
    # Drop the pool while the interpreter is whole: left to the final clean-up, it would be freed
    # after concurrent.futures.process (imported later than this module), whose callback then fails.
    global _POOL
    pool, _POOL = _POOL, None
    if pool is not None and _POOL_PID == os.getpid():
        pool.shutdown(wait=False, cancel_futures=True)


def forget_broken_pool() -> None:
    """After a :class:`BrokenProcessPool` (a worker died, out of memory?): the next
    :func:`cpu_pool` call starts a new pool."""
    global _POOL
    with _lock:
        _POOL = None


def map_in_pool(fn: Callable[..., Any], items: Iterable[Any], chunksize: int = 32) -> list[Any] | None:
    """``[fn(item) for item in items]`` computed in the pool, in order; None when there is no pool
    or it broke (the caller then does the work itself). ``fn`` must not raise: return errors as
    values (see :func:`error_value`)."""
    from concurrent.futures.process import BrokenProcessPool

    pool = cpu_pool()
    if pool is None:
        return None
    try:
        return list(pool.map(fn, items, chunksize=chunksize))
    except BrokenProcessPool:
        log.warning("the cpu pool broke; working in this process until it restarts")
        forget_broken_pool()
        return None


def error_value(exc: Exception) -> Exception:
    """An exception a pool worker returns as a value: ``exc`` itself when it survives the trip
    back to the parent, else a RuntimeError carrying its type and message (an exception that does
    not unpickle would otherwise fail the whole ``map``, every row of the batch with it)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _start_worker() -> None:
    """In a pool worker, first thing: leave the objects inherited from the parent out of garbage
    collection (scanning a parent's million rows would cost every worker time and copy-on-write
    memory), and exit when the parent process is gone (a kill -9 closes no pipe the worker waits on,
    since a forked worker holds both ends; without this it would sleep forever)."""
    import gc

    gc.freeze()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="pixmill-pool-watch", daemon=True).start()


__all__ = ["cores", "cpu_pool", "error_value", "forget_broken_pool", "map_in_pool"]
