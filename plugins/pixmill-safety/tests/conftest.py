"""Fixtures for pixmill-safety: a tiny CLIP and scene images (runs go through the harness's
``pixmill_run``, from pixmill-testing)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A random-weight CLIP folder, built offline once and loaded through from_pretrained."""
    from pixmill_safety.tiny import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture
def images(tmp_path: Path) -> list[dict]:
    """Six distinct 96 px scenes as rows ``img0``..``img5`` with a prompt each."""
    from pixmill_safety.samples import scene

    rows = []
    for i in range(6):
        scene(i, side=96).save(tmp_path / f"img{i}.png")
        rows.append({"id": f"img{i}", "prompt": f"a picture number {i}", "images": [f"img{i}.png"]})
    return rows
