"""The driver side of the Ray executor: replicas as Ray actors, fed from one queue of batches.

The bookkeeping is :class:`pixmill.worker_pool.BatchBook`, the same as the one-process-per-GPU pool:
a replica holds the batch it runs plus ``prefetch`` more; one that dies fails only the batch it was
running; its queued batches go back to the queue and a replacement actor starts (a few times at
most); a replica lost with its node has its running batch re-queued once. Actors are created with
``max_restarts=0, max_task_retries=0``: Ray never retries behind pixmill's back. Calls on an actor
run in the order they were sent, so the oldest unfinished call of a dead actor is the one that was
running.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from pixmill.errors import EnvironmentFault, PixmillError, failure_reason
from pixmill.executor import Batch, StepTask
from pixmill.operator import Failed, Outcome
from pixmill.worker_pool import BatchBook, WorkerState

from .cluster import alive_nodes, available
from .files import FileServer, write_marker, write_shipped
from .replica import ReplicaActor
from .versions import check_versions, installed_versions

log = logging.getLogger("pixmill.ray")

GRACE_SECONDS = 3.0  # after Ctrl-C, how long batches in flight may finish and be committed
CLOSE_SECONDS = 30.0  # how long replicas may take to unload at a clean end


@dataclass
class _Actor:
    actor: Any
    created: float
    node: str | None = None
    phase: str = "placing"  # placing -> loading -> ready


class RayPool:
    """Runs a step's batches on ``replicas`` Ray actors; see the module docstring."""

    def __init__(self, task: StepTask, config: dict[str, Any], replicas: int, gpus: float, cpus: float):
        self.task = task
        self.config = config
        self.replicas = replicas
        self.gpus, self.cpus = gpus, cpus
        self.device = "cuda:0" if gpus > 0 else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPUs
        self.pending: dict[Any, tuple[str, WorkerState, int | None]] = {}
        self.actors_started = 0
        self.modes: set[str] = set()
        self._driver_versions = installed_versions()

    # -- actors -------------------------------------------------------------------------------------
    def _start(self, book: BatchBook, slot: int) -> None:
        import ray

        cls = ray.remote(max_restarts=0, max_task_retries=0)(ReplicaActor)
        actor = cls.options(num_gpus=self.gpus, num_cpus=self.cpus,
                            name=None, max_concurrency=1).remote()
        self.actors_started += 1
        w = book.add_worker(slot, f"Ray replica {slot}")
        w.handle = _Actor(actor, time.monotonic())
        self.pending[actor.where.remote()] = ("where", w, None)

    def _kill(self, w: WorkerState) -> None:
        import ray

        for ref in [r for r, (_, ww, _) in self.pending.items() if ww is w]:
            del self.pending[ref]
        try:
            ray.kill(w.handle.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _file_server(self) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        cls = ray.remote(num_cpus=0, max_restarts=0)(FileServer)
        return cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(self.task.ctx)

    # -- the loop -----------------------------------------------------------------------------------
    def map(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[Outcome]]]:
        import ray

        ctx = self.task.ctx
        files = self.config.get("files") or "auto"
        book = BatchBook(batches, [f"Ray replica {i}" for i in range(self.replicas)],
                         prefetch=int(self.config.get("prefetch") or 0), max_restarts=int(self.config["max_restarts"]),
                         hint="lower --batch-size or the image size, or use the serving's memory options")
        marker_path, token = write_marker(ctx.run_dir)
        multi_node = len(alive_nodes()) > 1
        self.file_server = self._file_server() if files == "ship" or (files == "auto" and multi_node) else None
        self.load_args = (ray.put(self.task.spec()), self.device, files, (str(marker_path), token), self.file_server)
        for slot in range(self.replicas):
            self._start(book, slot)
        log.info("starting %d Ray replicas of %s (%g GPUs, %g CPUs each)", self.replicas,
                 self.task.operator.serving.name if self.task.operator.serving else "?", self.gpus, self.cpus)
        finished = False
        try:
            try:
                while not book.finished:
                    book.check_alive()
                    self._check_placement(book)
                    refs = list(self.pending)
                    if not refs:
                        break
                    ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)
                    if ready:
                        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                    for ref in ready:
                        yield from self._handle(book, ref)
                    for w in list(book.workers.values()):
                        self._feed(book, w)
                finished = book.finished
            except KeyboardInterrupt:
                # No new batch starts; what finishes within the grace period is still committed.
                book.draining = True
                deadline = time.monotonic() + GRACE_SECONDS
                while any(kind == "run" for kind, _, _ in self.pending.values()) and time.monotonic() < deadline:
                    runs = [r for r, (kind, _, _) in self.pending.items() if kind == "run"]
                    ready, _ = ray.wait(runs, num_returns=len(runs), timeout=max(0.0, deadline - time.monotonic()))
                    for ref in ready:
                        yield from self._handle(book, ref)
                raise
        finally:
            self._shutdown(book, graceful=finished)
            marker_path.unlink(missing_ok=True)

    def _feed(self, book: BatchBook, w: WorkerState) -> None:
        for bid, rows in book.to_send(w):
            self.pending[w.handle.actor.run.remote(rows)] = ("run", w, bid)

    def _handle(self, book: BatchBook, ref: Any) -> Iterator[tuple[Batch, list[Outcome]]]:
        import ray
        from ray.exceptions import RayActorError, RayError

        if ref not in self.pending:
            return  # a call of an actor already written off
        kind, w, bid = self.pending.pop(ref)
        try:
            value = ray.get(ref)
        except RayActorError as exc:
            yield from self._actor_failed(book, w, exc)
            return
        except RayError as exc:
            # Before loading (a runtime_env that cannot be set up, pixmill missing on the node) the
            # replica is dropped with the reason; in a batch (a BaseException escaped run_batch) the
            # batch fails and the actor stays.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, EnvironmentFault):
                raise EnvironmentFault(str(cause)) from None  # disk full...: the step stops, no row fails
            if kind != "run":
                book.load_failed(w, _first_line(exc))
                self._kill(w)
                return
            rows = book.done(w, bid)
            yield rows, [Failed(f"the batch raised on {w.where}: {_first_line(exc)}") for _ in rows]
            return
        if kind == "where":
            check_versions(self._driver_versions, value["versions"], f"the Ray node {value['ip']}")
            w.handle.node, w.handle.phase = value["node"], "loading"
            w.where = f"Ray replica {w.slot} on node {value['ip']} (pid {value['pid']})"
            self.pending[w.handle.actor.load.remote(*self.load_args)] = ("load", w, None)
        elif kind == "load":
            mode, error = value
            if error is not None:
                book.load_failed(w, error)
                self._kill(w)
                return
            self.modes.add(mode)
            w.handle.phase = "ready"
            book.ready(w)
            self._feed(book, w)
        else:
            outcomes, files = value
            if files:
                write_shipped(Path(self.task.ctx.run_dir), files)  # files first, then the rows that name them
            yield book.done(w, bid), outcomes

    def _actor_failed(self, book: BatchBook, w: WorkerState, exc: Exception) -> Iterator[tuple[Batch, list[Outcome]]]:
        from ray.exceptions import ActorUnavailableError

        if w.wid not in book.workers:
            return
        # Calls run in the order they were sent: the oldest unfinished one was running.
        running = w.assigned[0] if w.assigned else None
        node_gone = isinstance(exc, ActorUnavailableError) or (w.handle.node is not None
                                                                 and w.handle.node not in alive_nodes())
        why = _death_reason(exc)
        self._kill(w)
        failed = book.lost(w, why, running) if node_gone else book.died(w, why, running)
        if failed is not None:
            yield failed
        if book.should_replace(w):
            self._start(book, w.slot)

    def _check_placement(self, book: BatchBook) -> None:
        limit = float(self.config["placement_timeout"])
        now = time.monotonic()
        late = [w for w in book.workers.values() if w.handle.phase == "placing" and now - w.handle.created > limit]
        if not late:
            return
        asked = f"{self.gpus:g} GPUs and {self.cpus:g} CPUs"
        if not any(w.ready for w in book.workers.values()):
            raise PixmillError(f"Ray could not place a replica within {limit:g}s: each asks for {asked}; the "
                               f"cluster has {available()} free",
                               "lower replicas or gpus_per_replica, add nodes, or raise placement_timeout")
        for w in late:
            log.warning("Ray could not place %s (it asks for %s; free: %s): going on without it", w.where, asked,
                        available())
            self._kill(w)
            book.drop(w)

    def _shutdown(self, book: BatchBook, graceful: bool) -> None:
        import ray

        workers = list(book.workers.values())
        if graceful:
            closing = [w.handle.actor.close.remote() for w in workers if w.ready]
            try:
                ray.wait(closing, num_returns=len(closing), timeout=CLOSE_SECONDS)
            except Exception:  # noqa: BLE001 - killed below anyway
                pass
        for w in workers:
            self._kill(w)
            book.drop(w)
        if self.file_server is not None:
            ray.kill(self.file_server, no_restart=True)
        self.pending.clear()


def _first_line(exc: BaseException) -> str:
    """The failure reason of what a Ray task raised: its cause's, not Ray's wrapper's."""
    return failure_reason(getattr(exc, "cause", None) or exc)


def _death_reason(exc: Exception) -> str:
    """A readable cause from Ray's multi-line actor error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = [ln for ln in lines if not ln.startswith(("class_name:", "actor_id:", "pid:", "name:", "namespace:", "ip:"))]
    text = " ".join(detail[1:] if len(detail) > 1 else detail) or type(exc).__name__
    return text[:500]
