"""Fixtures for the pixmill-openai tests: an isolated key store, and the harness's fake
OpenAI-compatible server (pixmill-testing) under the short name these tests use."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_keys(tmp_path, monkeypatch):
    """No test sees the user's stored keys or environment key."""
    monkeypatch.setenv("PIXMILL_HOME", str(tmp_path / "pixmill-home"))
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(fake_openai_server):
    """A started fake OpenAI-compatible server on 127.0.0.1 (``.url``, ``.requests``, fault rules)."""
    return fake_openai_server
