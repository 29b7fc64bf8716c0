"""Fixtures for the qwen-vl tests: a tiny random-weight Qwen2.5-VL folder built offline (once for
the whole test run). Pipelines run, and their rows and failures are read, through the harness's
``pixmill_run`` and ``make_png`` (pixmill-testing)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from pixmill_qwenvl.tiny import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("qwen-vl") / "tiny")
