"""Reading a run: its steps and their rows in upstream order, whatever the store.

``pixmill.Run(path)`` is the public way to read a finished or running run folder::

    from pixmill import Run
    run = Run("runs/demo")
    for step in run.steps:
        print(step.folder, step.complete, step.done, step.failed)
    rows = list(run.rows())          # the last step's rows, in input order
    first = list(run.rows(step=1))   # any step, by index
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .run_folder import RunFolder, StepFolder


@dataclass
class RunStep:
    """One step of a run as it stands on disk."""

    folder: StepFolder

    @property
    def name(self) -> str:
        """The folder's name (``01-generate-images``)."""
        return self.folder.name

    @property
    def info(self) -> dict[str, Any]:
        """The step's ``step.json``: operator, options, key, counts, complete or not."""
        return self.folder.info

    @property
    def complete(self) -> bool:
        return bool(self.info.get("complete"))

    @property
    def done(self) -> int:
        """Input rows this step finished (kept, dropped or expanded)."""
        return self.folder.load_state(with_ids=False).done_count

    @property
    def failed(self) -> int:
        return len(self.folder.load_state(with_ids=False).failed)

    def rows(self) -> Iterator[dict]:
        """The step's committed output rows, in upstream order."""
        return self.folder.iter_rows()

    def failures(self) -> list[dict]:
        """The rows that failed: ``{"id", "reason", "row"}`` each."""
        return list(self.folder.load_state(with_ids=False).failed.values())


class Run:
    """A run folder, read (never written): ``steps`` and ``rows(step=-1)``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._folder = RunFolder(self.path)

    @property
    def manifest(self) -> dict[str, Any]:
        return self._folder.manifest

    @property
    def steps(self) -> list[RunStep]:
        """The steps of the pipeline that last ran into the folder, input step first."""
        from .plugins import get_registry

        store = get_registry().get_store(self.manifest.get("store", "jsonl"))()
        return [RunStep(f) for f in self._folder.steps(store)]

    def rows(self, step: int = -1) -> Iterator[dict]:
        """The rows of step ``step`` (an index into :attr:`steps`; the last by default), in order."""
        return self.steps[step].rows()

    def resolve(self, path: str) -> Path:
        """The file an image path in a row names (relative to the run folder or the input folder)."""
        p = Path(path)
        if p.is_absolute():
            return p
        candidate = self.path / p
        source = (self.manifest.get("input") or {}).get("path")
        if not candidate.exists() and source:
            return Path(source).parent / p
        return candidate
