"""Fixtures for pixmill-safety: a run helper over the real runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import read_jsonl, write_jsonl
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline


@pytest.fixture
def run_steps(tmp_path: Path):
    """Run steps over rows through the real runner; returns (output rows, last step folder)."""

    def run(rows: list[dict], steps: list[StepSpec], name: str = "run", **kw) -> tuple[list[dict], Path]:
        inp = write_jsonl(tmp_path / f"{name}.jsonl", rows)
        results = run_pipeline(PipelineSpec(steps=steps, input=inp, out=tmp_path / name, **kw))
        folder = tmp_path / name / results[-1].folder
        return [r for p in sorted(folder.glob("part-*")) for r in read_jsonl(p)], folder

    return run
