"""What every executor that runs batches in workers shares: the batch bookkeeping and the replica
life cycle.

The one-process-per-GPU pool (:mod:`pixmill.builtins.process_pool`) and the Ray executor
(``pixmill-ray``) move batches differently (pipes, Ray calls), but they must follow the same
rules, so both use this module:

- :class:`BatchBook` (the driver side) reads batches lazily, hands each worker what it runs plus
  ``prefetch`` more, and applies the failure rules: a worker that dies fails only the batch it was
  running, with the reason; the batches queued on it go back to the queue; a replacement starts in
  its slot a few times at most; a worker lost with its machine has its running batch re-queued once
  (re-running is safe: file names and seeds are deterministic); workers that cannot load stop the
  step with their reasons.
- :class:`Replica` (the worker side) is the life cycle of one replica: rebuild the step from its
  spec, use the device, load the serving, start the operator, run batches, unload.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import PixmillError
from .executor import Batch, StepTask, run_batch
from .operator import Failed, Outcome

log = logging.getLogger("pixmill.executor.workers")

PREFETCH = 1  # batches queued on a worker beyond the one it runs
MAX_RESTARTS = 3  # replacement workers per slot after deaths


# -- the worker side ------------------------------------------------------------------------------
class Replica:
    """One replica of a step, inside the process that runs its batches.

    ``Replica(spec, device)`` rebuilds the operator and its serving from :meth:`StepTask.spec`,
    tells the serving its device, loads it and starts the operator; :meth:`run` processes a batch
    with :func:`pixmill.executor.run_batch`; :meth:`close` unloads. ``ctx`` replaces the spec's
    context (an executor that ships files gives the replica a scratch copy of the step layout).
    """

    def __init__(self, spec: dict[str, Any], device: str | None, ctx: Any = None):
        task = StepTask.rebuild(spec)
        self.operator = task.operator
        self.ctx = ctx if ctx is not None else task.ctx
        serving = self.operator.serving
        if serving is not None:
            if device is not None:
                serving.use_device(device)
            serving.load()
        try:
            self.operator.start(self.ctx)
        except BaseException:
            self.close()
            raise

    def run(self, rows: Batch) -> list[Outcome]:
        return run_batch(self.operator, rows, self.ctx)

    def close(self) -> None:
        if self.operator.serving is not None:
            self.operator.serving.unload()


# -- the driver side ------------------------------------------------------------------------------
@dataclass
class WorkerState:
    """What the driver knows of one worker: its slot, whether it is loaded, and its batches."""

    wid: int
    slot: int
    where: str  # for messages: "worker process on cuda:1", "Ray actor 3 on node 10.0.0.5"...
    handle: Any = None  # the executor's own object (a process, an actor)
    ready: bool = False
    assigned: deque = field(default_factory=deque)  # batch ids sent to it, oldest first
    running: int | None = None  # the batch it said it started, when it says so


class BatchBook:
    """The take/feed/requeue/died bookkeeping of a pool of workers; see the module docstring.

    The executor starts workers (:meth:`add_worker`), sends what :meth:`to_send` returns, and
    reports what happens: :meth:`ready`, :meth:`started`, :meth:`done`, :meth:`load_failed`,
    :meth:`died`, :meth:`lost`. The loop ends when :attr:`finished` is true.
    """

    def __init__(self, batches: Iterable[Batch], slots: list[str], prefetch: int = PREFETCH,
                 max_restarts: int = MAX_RESTARTS, hint: str = ""):
        self.source = iter(batches)
        self.slots = list(slots)
        self.prefetch = max(0, int(prefetch))
        self.max_restarts = max_restarts
        self.hint = hint  # appended to a died batch's reason: what the user can change
        self.exhausted = False
        self.rows_of: dict[int, Batch] = {}  # every batch read and not yet handed back
        self.requeued: deque[int] = deque()
        self.workers: dict[int, WorkerState] = {}
        self.restarts = [0] * len(self.slots)
        self.load_errors: list[str] = []
        self.lost_once: set[int] = set()
        self.draining = False  # set on an interrupt: no new batch starts
        self._next_bid = 0
        self._next_wid = 0

    # -- workers ----------------------------------------------------------------------------------
    def add_worker(self, slot: int, where: str | None = None) -> WorkerState:
        wid, self._next_wid = self._next_wid, self._next_wid + 1
        w = WorkerState(wid, slot, where or self.slots[slot])
        self.workers[wid] = w
        return w

    def ready(self, w: WorkerState) -> None:
        w.ready = True

    def check_alive(self) -> None:
        """Stop the step when no worker is left (they all failed to load)."""
        if not self.workers:
            raise PixmillError(
                "every worker failed to start: " + "; ".join(dict.fromkeys(self.load_errors)),
                "fix the serving's setup (model path, memory options) and rerun",
            )

    # -- batches ----------------------------------------------------------------------------------
    def take(self) -> int | None:
        """The next batch id to run: a re-queued one first, else the next batch of the input."""
        if self.draining:
            return None
        if self.requeued:
            return self.requeued.popleft()
        if self.exhausted:
            return None
        batch = next(self.source, None)
        if batch is None:
            self.exhausted = True
            return None
        bid, self._next_bid = self._next_bid, self._next_bid + 1
        self.rows_of[bid] = batch
        return bid

    def to_send(self, w: WorkerState) -> list[tuple[int, Batch]]:
        """Batches to send to ``w`` now. Pull-based: a worker holds what it runs plus ``prefetch``
        more, so the input is never read further ahead than the workers can use."""
        out = []
        while w.ready and w.wid in self.workers and len(w.assigned) < 1 + self.prefetch:
            bid = self.take()
            if bid is None:
                break
            w.assigned.append(bid)
            out.append((bid, self.rows_of[bid]))
        return out

    def started(self, w: WorkerState, bid: int) -> None:
        w.running = bid

    def done(self, w: WorkerState, bid: int) -> Batch:
        """``w`` finished batch ``bid``: returns its rows (the caller yields them with the outcomes)."""
        w.assigned.remove(bid)
        w.running = None
        return self.rows_of.pop(bid)

    @property
    def in_flight(self) -> int:
        return sum(len(w.assigned) for w in self.workers.values())

    @property
    def finished(self) -> bool:
        idle = not self.requeued and not any(w.assigned for w in self.workers.values())
        return idle and (self.exhausted or self.draining)

    # -- failures ---------------------------------------------------------------------------------
    def load_failed(self, w: WorkerState, reason: str) -> None:
        log.error("%s could not load the serving: %s", w.where, reason)
        self.load_errors.append(f"{w.where}: {reason}")
        self.drop(w)

    def died(self, w: WorkerState, why: str, running: int | None = None) -> tuple[Batch, list[Outcome]] | None:
        """``w`` died (``why``: a readable cause). Its queued batches go back to the queue; the batch
        it was running (``running``, else the one it said it started) fails with the reason, which
        is returned as ``(rows, outcomes)`` for the caller to yield. Call :meth:`should_replace`
        to know whether to start a replacement in its slot."""
        self.drop(w)
        if not w.ready:
            self.load_errors.append(f"{w.where}: it died while loading ({why})")
            log.error("%s died while loading the serving: %s", w.where, why)
        running = w.running if running is None else running
        for bid in w.assigned:
            if bid != running:
                self.requeued.append(bid)  # never started: another worker runs it
        if running is None or running not in self.rows_of:
            return None
        rows = self.rows_of.pop(running)
        reason = f"the {w.where} died while running this batch of {len(rows)} rows: {why}"
        if self.hint:
            reason += f"; {self.hint}"
        log.error("%s", reason)
        return rows, [Failed(reason) for _ in rows]

    def lost(self, w: WorkerState, why: str, running: int | None = None) -> tuple[Batch, list[Outcome]] | None:
        """``w`` was lost with its machine: every batch on it goes back to the queue, the running
        one once only (a batch that loses its machine twice fails like a died one)."""
        running = w.running if running is None else running
        if running is not None and running in self.lost_once:
            return self.died(w, why, running)
        if running is not None:
            self.lost_once.add(running)
        self.drop(w)
        log.warning("%s was lost (%s): its %d batches go back to the queue", w.where, why,
                    len(w.assigned))
        self.requeued.extend(w.assigned)
        return None

    def should_replace(self, w: WorkerState) -> bool:
        """Whether to start a replacement in ``w``'s slot (counted; only for workers that had loaded)."""
        if self.draining or not w.ready or self.restarts[w.slot] >= self.max_restarts:
            return False
        self.restarts[w.slot] += 1
        log.warning("starting a replacement worker for %s (%d of %d)", self.slots[w.slot], self.restarts[w.slot],
                    self.max_restarts)
        return True

    def drop(self, w: WorkerState) -> None:
        self.workers.pop(w.wid, None)
