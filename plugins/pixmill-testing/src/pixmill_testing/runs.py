"""Plain helpers behind the fixtures, importable by test modules: input files, tiny PNGs, and the
rows and failures of a finished run, read through :class:`pixmill.Run` (never from part files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON Lines (folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON Lines file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def png(path: str | Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (32, 32)) -> Path:
    """A real PNG file of one colour."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def step_rows(run_dir: str | Path, step: int = -1) -> list[dict]:
    """The committed rows of one step of a run (default: the last), in order."""
    from pixmill.run import Run

    return list(Run(run_dir).rows(step=step))


def step_failures(run_dir: str | Path, step: int = -1) -> dict[str, str]:
    """The rows one step of a run failed: row id -> reason."""
    from pixmill.run import Run

    return _reasons(Run(run_dir).steps[step])


def _reasons(step: Any) -> dict[str, str]:
    return {f["id"]: f["reason"] for f in step.failures()}


class RunResult:
    """A finished in-process run, read through :class:`pixmill.Run`: ``rows`` (last step, input
    order), ``by_id``, ``failed`` (id -> reason), ``folder`` (the last step's folder), and any
    step's rows and failures by its index (0 is the input)."""

    def __init__(self, out: Path, results: list[Any]):
        from pixmill.run import Run

        self.out = Path(out)
        self.results = results
        self.run = Run(self.out)
        last = self.run.steps[-1]
        self.rows = list(last.rows())
        self.by_id = {str(r["id"]): r for r in self.rows}
        self.failed = _reasons(last)
        self.folder = last.folder.path

    def step_rows(self, index: int) -> list[dict]:
        return list(self.run.rows(step=index))

    def step_by_id(self, index: int) -> dict[str, dict]:
        return {str(r["id"]): r for r in self.run.rows(step=index)}

    def step_failed(self, index: int) -> dict[str, str]:
        return _reasons(self.run.steps[index])

    def image(self, path: str) -> Any:
        """The RGB pixels of an image a row names."""
        from PIL import Image

        with Image.open(self.run.resolve(path)) as im:
            return im.convert("RGB").copy()
