"""Shared fixtures (helpers live in helpers.py, importable from every test module)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_jsonl


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    rows = [{"conversations": [{"role": "user", "content": f"a cat number {i}"}], "images": [""], "n": i}
            for i in range(50)]
    return write_jsonl(tmp_path / "prompts.jsonl", rows)


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """Each test sees the plugins its environment selects (tests change PIXMILL_* variables)."""
    from pixmill.plugins import reset_registry

    monkeypatch.delenv("PIXMILL_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("PIXMILL_STRICT_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def clients():
    """``clients(base_url, **make_client options)``: openai clients with the key ``sk-test``,
    closed after the test."""
    from pixmill.http import make_client
    from pixmill.http.loop import run_sync

    made = []

    def make(url, **kw):
        made.append(make_client(url, "sk-test", **kw))
        return made[-1]

    yield make
    for client in made:
        run_sync(client.close())
