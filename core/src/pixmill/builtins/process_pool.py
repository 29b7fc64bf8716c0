"""One worker process per device (GPU), fed from one queue of batches held by this process.

Each worker pins its device before torch is imported, rebuilds the operator and its serving from
:meth:`StepTask.spec`, loads the weights once, then asks for batches one after another. The queue
lives here: a worker that starts a batch is sent the next one at once (one batch prefetched), so a
fast GPU never waits for a slow one and at most two batches per worker are in flight.

A worker that dies (killed for memory, a driver crash, ``os._exit``) fails only the batch it was
running, with the reason; the batch it had prefetched goes back to the queue, a replacement worker
starts on the same device (a few times at most), and the other workers go on.

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
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable, Iterator

from ..errors import EnvironmentFault, PixmillError
from ..executor import Batch, StepTask, _reason, run_batch
from ..operator import Failed, Outcome

log = logging.getLogger("pixmill.executor.devices")

PREFETCH = 1  # batches queued in a worker beyond the one it runs
MAX_RESTARTS = 3  # replacement workers per device after deaths
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
        # Unpickled only now, after the device is pinned: the spec's classes may import torch.
        task = StepTask.rebuild(pickle.loads(spec_blob))
        op, ctx = task.operator, task.ctx
        if cpu_threads and local_device == "cpu":
            import torch

            torch.set_num_threads(cpu_threads)
        if op.serving is not None:
            op.serving.use_device(local_device)
            op.serving.load()
        op.start(ctx)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send((_LOAD_FAILED, wid, None, _reason(exc)))
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
                outcomes = run_batch(op, rows, ctx)
            except EnvironmentFault as exc:  # disk full, memory...: the parent stops the step
                conn.send((_FAULT, wid, bid, str(exc)))
                break
            conn.send((_DONE, wid, bid, outcomes))
    finally:
        if op.serving is not None:
            op.serving.unload()


# -- the parent side ------------------------------------------------------------------------------
@dataclass
class _Worker:
    wid: int
    slot: int
    device: str
    proc: Any
    inbox: Any
    conn: Connection
    ready: bool = False
    assigned: deque = field(default_factory=deque)  # batch ids sent to it, oldest first
    running: int | None = None


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
        self.workers: dict[int, _Worker] = {}
        self.restarts = [0] * len(self.devices)
        self.load_errors: list[str] = []
        self._next_wid = 0
        n_cpu = sum(1 for d in self.devices if d == "cpu")
        self.cpu_threads = max(1, (os.cpu_count() or 1) // n_cpu) if n_cpu > 1 else None

    def _start(self, slot: int) -> None:
        wid, self._next_wid = self._next_wid, self._next_wid + 1
        recv, send = self.mp.Pipe(duplex=False)
        inbox = self.mp.Queue()
        proc = self.mp.Process(
            target=_worker_main, name=f"pixmill-worker-{self.devices[slot]}-{wid}", daemon=True,
            args=(wid, self.devices[slot], self.spec_blob, inbox, send, logging.getLogger().getEffectiveLevel(),
                  self.cpu_threads),
        )
        proc.start()
        send.close()  # the parent keeps only the reading end, so a dead worker reads as EOF
        self.workers[wid] = _Worker(wid, slot, self.devices[slot], proc, inbox, recv)

    def map(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[Outcome]]]:
        """Yield ``(batch, outcomes)`` as batches finish, in any order."""
        source = iter(batches)
        exhausted = False
        rows_of: dict[int, Batch] = {}  # every batch read and not yet yielded
        requeued: deque[int] = deque()
        next_bid = 0

        def take() -> int | None:
            nonlocal exhausted, next_bid
            if requeued:
                return requeued.popleft()
            if exhausted:
                return None
            batch = next(source, None)
            if batch is None:
                exhausted = True
                return None
            bid, next_bid = next_bid, next_bid + 1
            rows_of[bid] = batch
            return bid

        def feed(w: _Worker) -> None:
            # Pull-based: a worker holds what it runs plus `prefetch` more, never the whole input.
            while w.ready and len(w.assigned) < 1 + self.prefetch:
                bid = take()
                if bid is None:
                    return
                w.inbox.put((bid, rows_of[bid]))
                w.assigned.append(bid)

        for slot in range(len(self.devices)):
            self._start(slot)
        log.info("started %d worker processes on %s", len(self.devices), ", ".join(self.devices))
        finished = False
        try:
            while True:
                if exhausted and not requeued and not any(w.assigned for w in self.workers.values()):
                    finished = True
                    break
                if not self.workers:
                    raise PixmillError(
                        "every worker process failed to start: " + "; ".join(dict.fromkeys(self.load_errors)),
                        "fix the serving's setup (model path, memory options) and rerun",
                    )
                conns = {w.conn: w for w in self.workers.values()}
                for conn in wait(list(conns), timeout=5.0):
                    w = conns[conn]
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        yield from self._died(w, rows_of, requeued)
                        continue
                    kind, _wid, bid, payload = msg
                    if kind == _READY:
                        w.ready = True
                    elif kind == _LOAD_FAILED:
                        self._load_failed(w, payload)
                        continue
                    elif kind == _STARTED:
                        w.running = bid
                    elif kind == _FAULT:
                        raise EnvironmentFault(payload)  # not the rows' fault: no failure is recorded
                    elif kind == _DONE:
                        w.assigned.remove(bid)
                        w.running = None
                        yield rows_of.pop(bid), payload
                    feed(w)
                for w in list(self.workers.values()):
                    if w.ready:
                        feed(w)  # a worker idle since the input ran dry may get requeued batches
        finally:
            self._shutdown(graceful=finished)

    def _load_failed(self, w: _Worker, reason: str) -> None:
        log.error("worker on %s could not load the serving: %s", w.device, reason)
        self.load_errors.append(f"{w.device}: {reason}")
        self._drop(w)

    def _died(self, w: _Worker, rows_of: dict[int, Batch], requeued: deque) -> Iterator[tuple[Batch, list[Outcome]]]:
        w.proc.join(timeout=5.0)
        why = death_reason(w.proc.exitcode)
        self._drop(w)
        if not w.ready:
            self.load_errors.append(f"{w.device}: the worker process died while loading ({why})")
            log.error("worker on %s died while loading the serving: %s", w.device, why)
        for bid in w.assigned:
            if bid != w.running:
                requeued.append(bid)  # never started: another worker runs it
        if w.running is not None:
            rows = rows_of.pop(w.running)
            reason = (f"the worker process on {w.device} died while running this batch of {len(rows)} rows: "
                      f"{why}; lower --batch-size or the image size, or use the serving's memory options")
            log.error("%s", reason)
            yield rows, [Failed(reason) for _ in rows]
        if self.restarts[w.slot] < self.max_restarts and w.ready:
            self.restarts[w.slot] += 1
            log.warning("starting a replacement worker on %s (%d of %d)", w.device, self.restarts[w.slot],
                        self.max_restarts)
            self._start(w.slot)

    def _drop(self, w: _Worker) -> None:
        self.workers.pop(w.wid, None)
        w.conn.close()
        w.inbox.close()
        w.inbox.cancel_join_thread()

    def _shutdown(self, graceful: bool) -> None:
        workers = list(self.workers.values())
        for w in workers:
            try:
                w.inbox.put(None)
            except (OSError, ValueError):
                pass
        # A clean end lets each worker unload; on an error or Ctrl-C the runner is already
        # unwinding, so a worker stuck in a batch is killed at once (its batch was not committed).
        deadline = time.monotonic() + (JOIN_SECONDS if graceful else 0.5)
        for w in workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5.0)
            self._drop(w)


def map_on_devices(task: StepTask, batches: Iterable[Batch],
                   devices: list[str]) -> Iterator[tuple[Batch, list[Outcome]]]:
    """Run ``task``'s batches in one worker process per entry of ``devices``."""
    if task.operator.stateful:
        raise PixmillError(f"operator {task.operator.name} keeps state across batches",
                           "run it in one process (a single device)")
    yield from DevicePool(task, devices).map(batches)
