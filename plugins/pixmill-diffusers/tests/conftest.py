"""Tiny random-weight pipelines built once per session, offline, and the helpers these tests share
(test pictures, pixels, the rows a killed step kept). Pipelines run through the harness's
``pixmill_run`` (pixmill-testing): pixmill's real runner, the same code path as `pixmill run`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pixmill_diffusers.tiny import make_tiny

    root = tmp_path_factory.mktemp("models")
    return {kind: make_tiny(root / kind, kind) for kind in ("flux", "flux-kontext", "sd")}


@pytest.fixture(scope="session")
def addons(models, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SDXL pipeline, and tiny ControlNets / IP-Adapters for the SD, SDXL and FLUX pipelines."""
    from pixmill_diffusers.tiny import make_tiny
    from pixmill_diffusers.tiny_addons import make_tiny_controlnet, make_tiny_ip_adapter

    root = tmp_path_factory.mktemp("addons")
    out = {"sdxl": make_tiny(root / "sdxl", "sdxl")}
    bases = {"sd": models["sd"], "sdxl": out["sdxl"], "flux": models["flux"]}
    for kind, base in bases.items():
        out[f"{kind}-controlnet"] = make_tiny_controlnet(base, root / f"{kind}-controlnet")
        out[f"{kind}-ip-adapter"] = make_tiny_ip_adapter(base, root / f"{kind}-ip-adapter")
    out["sd-controlnet-2"] = make_tiny_controlnet(bases["sd"], root / "sd-controlnet-2", seed=1)
    return out


@pytest.fixture(scope="session")
def estimators(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny depth, pose and person-detector models for control-image, saved with their processors."""
    from pixmill_diffusers.tiny_estimators import ESTIMATOR_KINDS, make_tiny_estimator

    root = tmp_path_factory.mktemp("estimators")
    return {kind: make_tiny_estimator(root / kind, kind) for kind in ESTIMATOR_KINDS}


def save_pattern(path: Path, size: tuple[int, int], kind: str) -> str:
    """A small test picture with clear edges: ``stripes``, ``square`` or ``noise``."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    if kind == "noise":
        image = Image.fromarray((np.random.RandomState(0).rand(h, w, 3) * 255).astype("uint8"))
    else:
        image = Image.new("RGB", size, (0, 0, 0))
        draw = ImageDraw.Draw(image)
        if kind == "stripes":
            for x in range(0, w, 8):
                draw.rectangle((x, 0, x + 3, h), fill=(255, 255, 255))
        else:
            draw.rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(255, 255, 255))
    image.save(path)
    return path.name


@pytest.fixture(autouse=True)
def _fresh_registry():
    from pixmill.plugins import reset_registry

    reset_registry()
    yield
    reset_registry()


def kept_rows(out: Path, index: int) -> list[dict]:
    """The rows step ``index`` of a run has kept so far, even mid-run or after a kill -9: the
    committed ones (read through pixmill.Run) and those its journal holds, which the next run
    commits before asking for anything."""
    from pixmill import Run

    steps = Run(out).steps if (out / "manifest.json").exists() else []
    if index >= len(steps):
        return []  # the manifest lists a step once it starts
    rows = list(steps[index].rows())
    journal = steps[index].folder.path / "journal.jsonl"
    for line in journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []:
        try:
            rows += json.loads(line).get("rows", [])
        except ValueError:
            break  # a torn last line
    return rows


def pixels(image: Any) -> Any:
    import numpy as np

    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def h() -> Any:
    """The helpers above, as a fixture (test modules cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(pixels=pixels, kept=kept_rows, pattern=save_pattern)
