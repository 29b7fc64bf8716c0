"""pytest fixtures for plugin authors (loaded automatically where pixmill is installed: entry point
``pytest11``). Real parts, no mocks: steps run through pixmill's own runner, rows are read back
through :class:`pixmill.Run`, and HTTP servings talk to a real OpenAI-compatible server on 127.0.0.1.

- ``pixmill_plugin``: register a plugin object (a module or any object with hook implementations)
  for one test: ``pixmill_plugin(MyPluginModule)``.
- ``pixmill_run``: run steps in-process over rows and read the result:
  ``run = pixmill_run(rows, [("generate-images", {"serving": {"name": "paint"}})])``; then
  ``run.rows`` (last step, input order), ``run.by_id``, ``run.failed`` (id -> reason),
  ``run.step_rows(k)``, ``run.image(path)``.
- ``make_png``: a small real PNG: ``make_png(path, color=(255, 0, 0), size=(32, 32))``.
- ``fake_openai_server``: a started :class:`pixmill.testing.openai_server.FakeOpenAIServer`.
- ``write_jsonl(path, rows)`` and ``read_jsonl(path)`` as plain functions in this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON Lines (folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def png(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (32, 32)) -> Path:
    """A real PNG file of one colour."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


class RunResult:
    """A finished in-process run, read through :class:`pixmill.Run`."""

    def __init__(self, out: Path, results: list[Any]):
        from pixmill.run import Run

        self.out = Path(out)
        self.results = results
        self.run = Run(self.out)
        self.rows = list(self.run.rows())
        self.by_id = {str(r["id"]): r for r in self.rows}
        self.failed = {f["id"]: f["reason"] for f in self.run.steps[-1].failures()}

    def step_rows(self, index: int) -> list[dict]:
        return list(self.run.rows(step=index))

    def image(self, path: str) -> Any:
        """The RGB pixels of an image a row names."""
        from PIL import Image

        with Image.open(self.run.resolve(path)) as im:
            return im.convert("RGB").copy()


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
    with ``steps`` a list of ``(operator, options)``; rows may also be a path to an input file."""
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline

    def run(rows: list[dict] | Path, steps: list[tuple[str, dict]], name: str = "run", seed: int = 0,
            **run_options: Any) -> RunResult:
        inp = rows if isinstance(rows, (str, Path)) else write_jsonl(tmp_path / f"{name}.jsonl", rows)
        spec = PipelineSpec(steps=[StepSpec(op, dict(opts)) for op, opts in steps], input=Path(inp),
                            out=tmp_path / name, seed=seed, **run_options)
        return RunResult(tmp_path / name, run_pipeline(spec))

    return run


@pytest.fixture
def make_png() -> Callable[..., Path]:
    return png


@pytest.fixture
def fake_openai_server() -> Iterator[Any]:
    from pixmill.testing.openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server
