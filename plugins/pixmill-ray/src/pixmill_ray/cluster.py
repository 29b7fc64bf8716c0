"""Connecting to Ray: start a local one or join a cluster, and read what the cluster offers."""

from __future__ import annotations

import logging
import math
from typing import Any

from pixmill.errors import ConfigError, PixmillError

log = logging.getLogger("pixmill.ray")


def connect(config: dict[str, Any]) -> bool:
    """Make sure this process is connected to Ray; returns whether it started Ray itself (and so
    shuts it down at the end). A Ray already initialised in this process is used as it is."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "runtime_env": config.get("runtime_env") or None}
    if config.get("address"):
        try:
            ray.init(address=config["address"], **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise PixmillError(f"cannot join the Ray cluster at {config['address']}: {str(exc).splitlines()[0]}",
                               "start it with `ray start --head` (see docs/scale-out.md), or drop the address "
                               "option to start a local Ray") from None
        return False
    ray.init(num_cpus=config.get("num_cpus"), num_gpus=config.get("num_gpus"),
             object_store_memory=config.get("object_store_memory"), **kwargs)
    return True


def replica_needs(config: dict[str, Any], resources: dict[str, float]) -> tuple[float, float]:
    """(GPUs, CPUs) one replica asks Ray for: the executor's options, else the serving's answer."""
    gpus = config.get("gpus_per_replica")
    cpus = config.get("cpus_per_replica")
    gpus = float(resources.get("gpus", 0.0) if gpus is None else gpus)
    cpus = float(resources.get("cpus", 1.0) if cpus is None else cpus)
    if gpus < 0 or cpus < 0 or (gpus > 1 and not gpus.is_integer()):
        raise ConfigError(f"executor ray: a replica cannot ask for {gpus:g} GPUs and {cpus:g} CPUs",
                          "use a fraction of one GPU (0.5) or a whole number of GPUs, and CPUs >= 0")
    return gpus, cpus


def replica_count(config: dict[str, Any], gpus: float, cpus: float, serving: str) -> int:
    """How many replicas to start: the ``replicas`` option, else as many as the cluster's
    resources hold (all of them, not only the driver's: the head may have no GPU)."""
    if config.get("replicas"):
        return int(config["replicas"])
    import ray

    total = ray.cluster_resources()
    if gpus > 0:
        n = math.floor(total.get("GPU", 0.0) / gpus + 1e-9)
        what = f"{total.get('GPU', 0.0):g} GPUs"
    else:
        n = math.floor(total.get("CPU", 0.0) / cpus + 1e-9) if cpus > 0 else 1
        what = f"{total.get('CPU', 0.0):g} CPUs"
    if n < 1:
        raise PixmillError(f"the Ray cluster has {what}; one replica of {serving} asks for {gpus:g} GPUs and "
                           f"{cpus:g} CPUs", "add a node with GPUs, lower gpus_per_replica, or run the serving on "
                           "CPUs (--devices cpu)")
    return n


def available() -> str:
    """The cluster's free resources, for error messages."""
    import ray

    free = ray.available_resources()
    return ", ".join(f"{k} {v:g}" for k, v in sorted(free.items()) if k in ("CPU", "GPU")) or "nothing"


def alive_nodes() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
