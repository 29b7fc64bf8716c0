"""Fixtures for the qwen-vl tests: a tiny random-weight Qwen2.5-VL folder built offline (once for
the whole test run), and functions that run pipelines and read their outputs and failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from pixmill_qwenvl.tiny import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("qwen-vl") / "tiny")


@pytest.fixture
def run_steps(tmp_path):
    """``run_steps(rows, steps) -> (results, out)``: the rows as an input file, then the pipeline."""
    from pixmill.pipeline import PipelineSpec, run_pipeline

    def run(rows: list[dict], steps: list, name: str = "run"):
        inp = tmp_path / "input.jsonl"
        inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out = tmp_path / name
        return run_pipeline(PipelineSpec(steps=steps, input=inp, out=out)), out

    return run


def step_rows(out: Path, result) -> dict[str, dict]:
    from pixmill import Run

    return {r["id"]: r for r in Run(out).rows(step=result.index)}


def step_failures(out: Path, result) -> dict[str, str]:
    path = out / result.folder / "failed.jsonl"
    if not path.exists():
        return {}
    return {json.loads(line)["id"]: json.loads(line)["reason"] for line in path.read_text().splitlines() if line}


@pytest.fixture
def read_step():
    """``read_step(out, result) -> (rows by id, failure reasons by id)``."""
    return lambda out, result: (step_rows(out, result), step_failures(out, result))


@pytest.fixture
def make_png(tmp_path):
    """``make_png(name, (w, h), colour) -> "images/name"``, written next to the input file."""
    from PIL import Image

    def make(name: str, size: tuple[int, int], colour: tuple[int, int, int] = (200, 30, 30)) -> str:
        path = tmp_path / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colour).save(path)
        return f"images/{name}"

    return make
