"""The Ray actor that holds one replica of a step's serving (the worker side)."""

from __future__ import annotations

import logging
import os
from typing import Any

from pixmill.errors import failure_reason
from pixmill.worker_pool import Replica

from .files import collect_files, remove_scratch, scratch_context, sees_marker
from .versions import installed_versions

log = logging.getLogger("pixmill.ray.replica")


class ReplicaActor:
    """One replica: :meth:`where` answers once Ray placed it, :meth:`load` brings up the serving
    (returning the reason instead of raising when it cannot), :meth:`run` processes one batch and
    returns ``(outcomes, files)``: ``files`` holds the bytes of what the batch wrote in ship mode."""

    def __init__(self) -> None:
        self.replica: Replica | None = None
        self.ship = False

    def where(self) -> dict[str, Any]:
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "pid": os.getpid(), "versions": installed_versions()}

    def load(self, spec: dict[str, Any], device: str, files: str, marker: tuple[str, str],
             file_server: Any) -> tuple[str, str | None]:
        """Returns (files mode used here, load error or None)."""
        try:
            shared = sees_marker(*marker)
            if files == "shared" and not shared:
                raise RuntimeError(f"the run folder {os.path.dirname(marker[0])} is not visible on this node "
                                   "at the same path (files=shared)")
            self.ship = files == "ship" or not shared
            ctx = scratch_context(spec["ctx"], file_server) if self.ship else None
            self.replica = Replica(spec, device, ctx)
        except BaseException as exc:  # noqa: BLE001 - the driver reports it and stops the step
            return ("ship" if self.ship else "shared"), failure_reason(exc)
        return ("ship" if self.ship else "shared"), None

    def run(self, rows: list[dict]) -> tuple[list, dict[str, bytes]]:
        assert self.replica is not None, "load() first"
        outcomes = self.replica.run(rows)
        return outcomes, (collect_files(self.replica.ctx) if self.ship else {})

    def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
            remove_scratch(self.replica.ctx)
            self.replica = None
