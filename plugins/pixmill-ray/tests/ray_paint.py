"""A real, model-free Serving for the Ray tests: it draws noise from each seed and records the
process and Ray node that made each image. Ray workers import it by module name (the tests put
this folder on their PYTHONPATH), as the device-pool tests do with their serving."""

from __future__ import annotations

import os
import time
from typing import Any

from pixmill.errors import RowError
from pixmill.options import Option
from pixmill.serving import TEXT_TO_IMAGE, GeneratedImage, ImageRequest, Serving


def draw(seed: int) -> Any:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8))


class RayPaint(Serving):
    """Draws noise; ``die_on`` makes the worker process exit on that prompt (a crash no try/except
    sees), ``delay`` stands in for GPU time, ``local`` keeps the steps on the driver."""

    name = "ray-paint"
    capabilities = frozenset({TEXT_TO_IMAGE})
    options = (
        Option("die_on", str, None, cache=False),
        Option("delay", float, 0.0, cache=False),
        Option("local", bool, False, cache=False),
        Option("fail_load", bool, False, cache=False),
    )

    def load(self) -> None:
        if self.config["fail_load"]:
            raise RuntimeError("weights not found")

    def replica_resources(self) -> dict[str, float] | None:
        return None if self.config["local"] else {"gpus": 0.0, "cpus": 1.0}

    def generate(self, requests: list[ImageRequest]) -> list:
        time.sleep(self.config["delay"])
        out: list = []
        for r in requests:
            if r.prompt == self.config["die_on"]:
                os._exit(3)
            if r.prompt == "refuse":
                out.append(RowError("the serving refused this prompt"))
                continue
            out.append([GeneratedImage(image=draw(seed), params={"seed": seed, "pid": os.getpid(),
                                                                  "node": _node()}) for seed in r.seeds])
        return out


def _node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - not on Ray
        return None
