"""Fixtures for the pixmill-openai tests: a real OpenAI-compatible server on 127.0.0.1, an isolated
key store, and helpers to read a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pixmill_testing.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def isolated_keys(tmp_path, monkeypatch):
    """No test sees the user's stored keys or environment key."""
    monkeypatch.setenv("PIXMILL_HOME", str(tmp_path / "pixmill-home"))
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _step_rows(run: Path, index: int) -> list[dict]:
    from pixmill import Run

    return list(Run(run).rows(step=index))


def _failed_rows(run: Path, index: int) -> list[dict]:
    folder = sorted(Path(run).glob(f"{index:02d}-*"))[0]
    path = folder / "failed.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _png(path: Path, color=(200, 30, 30), size=(48, 32)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def util():
    """Small helpers: write_jsonl, step_rows, failed_rows, png, repo."""
    return SimpleNamespace(write_jsonl=_write_jsonl, step_rows=_step_rows, failed_rows=_failed_rows, png=_png,
                           repo=REPO)
