"""pytest fixtures for plugin authors (loaded automatically where pixmill-testing is installed: entry point
``pytest11``). Real parts, no mocks: steps run through pixmill's own runner, rows are read back
through :class:`pixmill.Run`, and HTTP servings talk to a real OpenAI-compatible server on 127.0.0.1.

- ``pixmill_plugin``: register a plugin object (a module or any object with hook implementations)
  for one test: ``pixmill_plugin(MyPluginModule)``.
- ``pixmill_run``: run steps in-process over rows and read the result:
  ``run = pixmill_run(rows, [("generate-images", {"serving": {"name": "paint"}})])``; then
  ``run.rows`` (last step, input order), ``run.by_id``, ``run.failed`` (id -> reason),
  ``run.folder`` (the last step's folder), ``run.step_rows(k)``, ``run.step_by_id(k)``,
  ``run.step_failed(k)``, ``run.image(path)``.
- ``make_png``: a small real PNG: ``make_png(path, color=(255, 0, 0), size=(32, 32))``; a relative
  path is made in the test's ``tmp_path``, next to the input file ``pixmill_run`` writes, so a row
  can name it as it is.
- ``loaded_serving``: a serving checked and loaded as a step would, unloaded after the test:
  ``serving = loaded_serving("openai-llm", base_url=server.url, api_key="sk-test")``.
- ``fake_openai_server``: a started :class:`pixmill_testing.openai_server.FakeOpenAIServer`.

The plain functions behind them (``write_jsonl``, ``read_jsonl``, ``step_rows``, ``step_failures``)
are importable from :mod:`pixmill_testing` for tests that run the CLI or an executor themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .runs import RunResult, png, write_jsonl


@pytest.fixture
def pixmill_plugin() -> Iterator[Callable[[Any], None]]:
    """Register plugin objects for the duration of one test (the registry is rebuilt after)."""
    from pixmill.plugins import PluginInfo, get_registry, reset_registry

    reset_registry()

    def register(plugin: Any, name: str | None = None) -> None:
        label = name or getattr(plugin, "__name__", type(plugin).__name__)
        get_registry().add_plugin(plugin, PluginInfo(name=label, distribution=f"test {label}", version="test"),
                                  strict=True)

    yield register
    reset_registry()


@pytest.fixture
def pixmill_run(tmp_path: Path) -> Callable[..., RunResult]:
    """Run steps in-process through the real runner: ``pixmill_run(rows, steps, name="run", seed=0)``
    with ``steps`` a list of ``(operator, options)`` pairs or :class:`pixmill.pipeline.StepSpec`;
    rows may also be a path to an input file. Other keywords are :class:`PipelineSpec` fields."""
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline

    def run(rows: list[dict] | Path, steps: list[Any], name: str = "run", seed: int = 0,
            **run_options: Any) -> RunResult:
        inp = rows if isinstance(rows, (str, Path)) else write_jsonl(tmp_path / f"{name}.jsonl", rows)
        specs = [s if isinstance(s, StepSpec) else StepSpec(s[0], dict(s[1])) for s in steps]
        spec = PipelineSpec(steps=specs, input=Path(inp), out=tmp_path / name, seed=seed, **run_options)
        return RunResult(tmp_path / name, run_pipeline(spec))

    return run


@pytest.fixture
def loaded_serving() -> Iterator[Callable[..., Any]]:
    """``loaded_serving(name, **options)``: a serving from the registry, checked and loaded as a step
    would load it, and unloaded after the test (an HTTP serving's connections closed)."""
    from pixmill import get_serving

    loaded: list[Any] = []

    def load(name: str, **options: Any) -> Any:
        serving = get_serving(name, **options)
        serving.check()
        serving.load()
        loaded.append(serving)
        return serving

    yield load
    for serving in reversed(loaded):
        serving.unload()


@pytest.fixture
def make_png(tmp_path: Path) -> Callable[..., str]:
    """``make_png(path, color=(r, g, b), size=(w, h)) -> path`` as given (a str): a relative path is
    written under ``tmp_path``, where ``pixmill_run`` writes its input file."""

    def make(path: str | Path, color: tuple[int, int, int] = (200, 30, 30),
             size: tuple[int, int] = (32, 32)) -> str:
        png(tmp_path / path, color=color, size=size)  # an absolute path stays itself
        return str(path)

    return make


@pytest.fixture
def fake_openai_server() -> Iterator[Any]:
    from pixmill_testing.openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server
