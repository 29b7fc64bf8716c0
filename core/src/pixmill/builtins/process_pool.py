"""One worker process per device (GPU), fed from one queue of batches held by this process.

Each worker pins its device before torch is imported, rebuilds the operator and its serving from
:meth:`StepTask.spec`, loads the weights once, then asks for batches one after another. The queue
lives here: a worker that starts a batch is sent the next one at once (one batch prefetched), so a
fast GPU never waits for a slow one and at most two batches per worker are in flight.

A worker that dies (killed for memory, a driver crash, ``os._exit``) fails only the batch it was
running, with the reason; the batch it had prefetched goes back to the queue, a replacement worker
starts on the same device (a few times at most), and the other workers go on. These rules and the
worker's life cycle live in :mod:`pixmill.worker_pool`, shared with the Ray executor.

Messages from a worker travel over its own one-way pipe and are written synchronously, so when a
worker dies everything it said before dying can still be read: the parent always knows which batch
it was running.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import time
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable, Iterator

from ..errors import EnvironmentFault, PixmillError, failure_reason
from ..executor import Batch, StepTask
from ..operator import Outcome
from ..worker_pool import MAX_RESTARTS, PREFETCH, BatchBook, Replica, WorkerState

log = logging.getLogger("pixmill.executor.devices")

JOIN_SECONDS = 60.0

_READY, _LOAD_FAILED, _STARTED, _DONE, _FAULT = "ready", "load-failed", "started", "done", "fault"


# -- the worker side ------------------------------------------------------------------------------
def pin_device(device: str, cpu_threads: int | None = None) -> str:
    """Restrict this process to ``device`` before torch is imported; return the device name the
    serving should use here (a CUDA device becomes ``"cuda:0"``: the only one the worker sees)."""
    if device.startswith("cuda"):
        index = device.split(":", 1)[1] if ":" in device else "0"
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        # Indexes are relative to what the parent sees, as torch numbers them there.
        physical = visible[int(index)] if visible and index.isdigit() and int(index) < len(visible) else index
        os.environ["CUDA_VISIBLE_DEVICES"] = physical
        return "cuda:0"
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if cpu_threads:
            # Several CPU workers on one machine must share the cores, not each take them all.
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = str(cpu_threads)
    return device


def _worker_main(wid: int, device: str, spec_blob: bytes, inbox: Any, conn: Connection, log_level: int,
                 cpu_threads: int | None) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what stops (see pixmill.interrupt),
    # and stops a worker by killing it once the grace period is over.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local_device = pin_device(device, cpu_threads)
    logging.basicConfig(level=log_level, format=f"%(levelname)s [{device}#{wid}] %(name)s: %(message)s")
    try:
        if cpu_threads and local_device == "cpu":
            import torch

            torch.set_num_threads(cpu_threads)
        # Unpickled only now, after the device is pinned: the spec's classes may import torch.
        replica = Replica(pickle.loads(spec_blob), local_device)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send((_LOAD_FAILED, wid, None, failure_reason(exc)))
        return
    conn.send((_READY, wid, None, None))
    try:
        while True:
            item = inbox.get()
            if item is None:
                break
            bid, rows = item
            conn.send((_STARTED, wid, bid, None))
            try:
                outcomes = replica.run(rows)
            except EnvironmentFault as exc:  # disk full, memory...: the parent stops the step
                conn.send((_FAULT, wid, bid, str(exc)))
                break
            conn.send((_DONE, wid, bid, outcomes))
    finally:
        replica.close()


# -- the parent side ------------------------------------------------------------------------------
@dataclass
class _Process:
    proc: Any
    inbox: Any
    conn: Connection


def death_reason(exitcode: int | None) -> str:
    """A readable cause for a worker's exit code."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (often the machine running out of memory)" if name == "SIGKILL" else ""
        return f"it was killed by {name}{hint}"
    return f"it exited with code {exitcode}"


class DevicePool:
    """Runs a step's batches in one worker process per device; see the module docstring."""

    def __init__(self, task: StepTask, devices: list[str], prefetch: int = PREFETCH,
                 max_restarts: int = MAX_RESTARTS):
        self.devices = list(devices)
        self.prefetch = prefetch
        self.max_restarts = max_restarts
        self.mp = get_context("spawn")  # never fork a process that may hold CUDA state
        self.spec_blob = pickle.dumps(task.spec())
        self.book: BatchBook | None = None
        n_cpu = sum(1 for d in self.devices if d == "cpu")
        self.cpu_threads = max(1, (os.cpu_count() or 1) // n_cpu) if n_cpu > 1 else None

    def _start(self, book: BatchBook, slot: int) -> None:
        device = self.devices[slot]
        w = book.add_worker(slot, f"worker process on {device}")
        recv, send = self.mp.Pipe(duplex=False)
        inbox = self.mp.Queue()
        proc = self.mp.Process(
            target=_worker_main, name=f"pixmill-worker-{device}-{w.wid}", daemon=True,
            args=(w.wid, device, self.spec_blob, inbox, send, logging.getLogger().getEffectiveLevel(),
                  self.cpu_threads),
        )
        proc.start()
        send.close()  # the parent keeps only the reading end, so a dead worker reads as EOF
        w.handle = _Process(proc, inbox, recv)

    def map(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[Outcome]]]:
        """Yield ``(batch, outcomes)`` as batches finish, in any order."""
        book = self.book = BatchBook(batches, self.devices, self.prefetch, self.max_restarts,
                                     hint="lower --batch-size or the image size, or use the serving's memory options")

        def feed(w: WorkerState) -> None:
            for bid, rows in book.to_send(w):
                w.handle.inbox.put((bid, rows))

        for slot in range(len(self.devices)):
            self._start(book, slot)
        log.info("started %d worker processes on %s", len(self.devices), ", ".join(self.devices))
        finished = False
        try:
            while True:
                if book.finished:
                    finished = True
                    break
                book.check_alive()
                conns = {w.handle.conn: w for w in book.workers.values()}
                for conn in wait(list(conns), timeout=5.0):
                    w = conns[conn]
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        w.handle.proc.join(timeout=5.0)
                        failed = book.died(w, death_reason(w.handle.proc.exitcode))
                        self._close(w)
                        if failed is not None:
                            yield failed
                        if book.should_replace(w):
                            self._start(book, w.slot)
                        continue
                    kind, _wid, bid, payload = msg
                    if kind == _READY:
                        book.ready(w)
                    elif kind == _LOAD_FAILED:
                        book.load_failed(w, payload)
                        self._close(w)
                        continue
                    elif kind == _STARTED:
                        book.started(w, bid)
                    elif kind == _FAULT:
                        raise EnvironmentFault(payload)  # not the rows' fault: no failure is recorded
                    elif kind == _DONE:
                        yield book.done(w, bid), payload
                    feed(w)
                for w in list(book.workers.values()):
                    feed(w)  # a worker idle since the input ran dry may get requeued batches
        finally:
            self._shutdown(book, graceful=finished)

    @staticmethod
    def _close(w: WorkerState) -> None:
        w.handle.conn.close()
        w.handle.inbox.close()
        w.handle.inbox.cancel_join_thread()

    def _shutdown(self, book: BatchBook, graceful: bool) -> None:
        workers = list(book.workers.values())
        for w in workers:
            try:
                w.handle.inbox.put(None)
            except (OSError, ValueError):
                pass
        # A clean end lets each worker unload; on an error or Ctrl-C the runner is already
        # unwinding, so a worker stuck in a batch is killed at once (its batch was not committed).
        deadline = time.monotonic() + (JOIN_SECONDS if graceful else 0.5)
        for w in workers:
            proc = w.handle.proc
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
            book.drop(w)
            self._close(w)


def map_on_devices(task: StepTask, batches: Iterable[Batch],
                   devices: list[str]) -> Iterator[tuple[Batch, list[Outcome]]]:
    """Run ``task``'s batches in one worker process per entry of ``devices``."""
    if task.operator.stateful:
        raise PixmillError(f"operator {task.operator.name} keeps state across batches",
                           "run it in one process (a single device)")
    yield from DevicePool(task, devices).map(batches)
