"""Ray fixtures: one local Ray per test module (CPU only, a small object store), never `ray stop`
(it would stop every Ray on the machine). Workers find the test serving through PYTHONPATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

OBJECT_STORE = 256 * 1024 * 1024


def worker_env() -> dict[str, Any]:
    """runtime_env that lets Ray workers import the test serving."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}}


@pytest.fixture(scope="session")
def ray_env() -> dict[str, Any]:
    return worker_env()


_LOCAL: dict[str, str | None] = {"address": None}


@pytest.fixture
def local_ray():
    """A local Ray for the tests of every module, started once and reused: starting one costs
    several seconds. A test module that needs another Ray (a cluster) shuts it down first."""
    import ray

    if not (ray.is_initialized() and ray.get_runtime_context().gcs_address == _LOCAL["address"]):
        if ray.is_initialized():
            ray.shutdown()
        # Fractional CPUs per replica let 2-core CI machines run two replicas and the driver.
        ray.init(num_cpus=4, object_store_memory=OBJECT_STORE, include_dashboard=False, runtime_env=worker_env(),
                 logging_level="WARNING")
        _LOCAL["address"] = ray.get_runtime_context().gcs_address
    return ray


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_the_end():
    yield
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


def pixels(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


@pytest.fixture
def rt() -> Any:
    """The helpers above, as a fixture (test modules cannot import conftest under importlib mode);
    input files and a run's rows come from the harness (``pixmill_testing``)."""
    from types import SimpleNamespace

    return SimpleNamespace(pixels=pixels)
