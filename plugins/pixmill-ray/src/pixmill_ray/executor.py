"""The ``ray`` executor: model steps on Ray actors, everything else on the driver."""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Iterator

from pixmill.builtins.local_executor import LocalExecutor
from pixmill.executor import Batch, Executor, StepTask
from pixmill.operator import Operator, Outcome
from pixmill.options import Option

from .cluster import connect, replica_count, replica_needs

log = logging.getLogger("pixmill.ray")


class RayExecutor(Executor):
    """Runs the steps whose serving loads a local model (FLUX, Kontext, diffusers, Qwen-VL with
    transformers or vLLM) on Ray actors: one replica per ``gpus_per_replica`` share of the
    cluster's GPUs, loaded once, fed batches with bounded prefetch. Model-free, stateful and HTTP
    steps run on the driver like the local executor. The driver (the ``pixmill run`` process) stays
    the only writer of the run folder, so resume works exactly as with the local executor.

    With no ``address`` it starts a local Ray and shuts it down at the end; ``address=auto`` or a
    head address joins an existing cluster. See docs/scale-out.md.
    """

    name = "ray"
    description = "Ray actors on one machine or a cluster (model steps); the rest on the driver"
    options = (
        Option("address", str, None, "Ray cluster to join: auto, or the head's HOST:PORT (default: start a local Ray)",
               cache=False),
        Option("num_cpus", int, None, "local Ray only: CPUs it may use (default: all)", cache=False),
        Option("num_gpus", int, None, "local Ray only: GPUs it may use (default: all)", cache=False),
        Option("object_store_memory", int, None, "local Ray only: object store size in bytes (default: Ray's, 30% "
               "of RAM)", cache=False),
        Option("replicas", int, None, "replicas of a model step (default: as many as the cluster's resources hold)",
               cache=False),
        Option("gpus_per_replica", float, None, "GPUs one replica asks for; fractions share a GPU (0.5: two per GPU) "
               "(default: what the serving asks for, 1 unless it runs on the CPU)", cache=False),
        Option("cpus_per_replica", float, None, "CPUs one replica asks for (default: what the serving asks for, 1)",
               cache=False),
        Option("prefetch", int, 1, "batches queued on a replica beyond the one it runs", cache=False),
        Option("files", str, "auto", "how images travel: shared (workers write into the run folder, which every "
               "node sees at the same path), ship (workers send the bytes back to the driver), auto (shared when the "
               "worker sees the run folder)", choices=("auto", "shared", "ship"), cache=False),
        Option("max_restarts", int, 3, "replacement actors per replica after deaths", cache=False),
        Option("placement_timeout", float, 120.0, "seconds to wait for Ray to place a replica before failing with "
               "the resources asked for", cache=False),
        Option("runtime_env", dict, None, "Ray runtime_env (JSON) for the driver's job; never written to the run "
               "folder", cache=False, secret=True),
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._owns_ray = False
        self._connected = False
        self.actors_started = 0  # over the whole run: tests and logs check which steps left the driver

    # -- which steps leave the driver -------------------------------------------------------------
    def runs_remotely(self, op: Operator) -> bool:
        """A step runs on actors when its serving loads a local model and it keeps no state."""
        return op.serving is not None and not op.stateful and op.serving.replica_resources() is not None

    def map(self, task: StepTask, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[Outcome]]]:
        op = task.operator
        if not self.runs_remotely(op):
            # HTTP clients keep their keys and rate limits in this process; model-free steps are cheap.
            yield from LocalExecutor().map(task, batches)
            return
        from .pool import RayPool

        self._connect()
        assert op.serving is not None
        gpus, cpus = replica_needs(self.config, op.serving.replica_resources() or {})
        replicas = replica_count(self.config, gpus, cpus, op.serving.name)
        pool = RayPool(task, self.config, replicas, gpus, cpus)
        try:
            yield from pool.map(batches)
        finally:
            self.actors_started += pool.actors_started

    # -- the cluster ------------------------------------------------------------------------------
    def _connect(self) -> None:
        if not self._connected:
            self._owns_ray = connect(self.config)
            self._connected = True

    def close(self) -> None:
        if self._owns_ray:
            import ray

            ray.shutdown()
        self._owns_ray = self._connected = False

    def describe(self) -> dict[str, Any]:
        described = super().describe()  # runtime_env is secret: never in the manifest
        address = described["options"].get("address")
        if address:
            # ray://user:token@host:port -> ray://host:port
            described["options"]["address"] = re.sub(r"//[^/@]*@", "//", address)
        return described
