"""Fixtures for pixmill-safety: a run helper over the real runner, a tiny CLIP, scene images."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_jsonl
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline


@pytest.fixture
def run_steps(tmp_path: Path):
    """Run steps over rows through the real runner; returns (output rows, last step folder)."""

    def run(rows: list[dict], steps: list[StepSpec], name: str = "run", **kw) -> tuple[list[dict], Path]:
        inp = write_jsonl(tmp_path / f"{name}.jsonl", rows)
        results = run_pipeline(PipelineSpec(steps=steps, input=inp, out=tmp_path / name, **kw))
        folder = tmp_path / name / results[-1].folder
        from pixmill import Run

        return list(Run(tmp_path / name).rows()), folder

    return run


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
