"""What an operator sees of the run while it processes a step."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .file_roots import resolve_row_path, run_roots
from .rows import derive_seed, file_stem


@dataclass
class StepContext:
    """The run as seen from one step. Picklable, so worker processes get their own copy.

    Paths stored in rows are relative to ``run_dir`` (generated files) or to ``input_dir``
    (files named by the input); :meth:`resolve` turns either into an absolute path.
    """

    run_dir: Path
    step_dir: Path
    input_dir: Path
    seed: int = 0
    step_name: str = ""
    # Rows this step already committed (for stateful operators such as head and dedupe); set by
    # the runner, not picklable, so left out of worker copies.
    committed_rows: Callable[[], Iterator[dict]] | None = field(default=None, repr=False)
    committed_count: int = 0
    # Folders besides the run and input folders whose files rows may name (see pixmill.file_roots).
    allowed_roots: tuple[str, ...] = ()

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"pixmill.step.{self.step_name}")

    def resolve(self, path: str) -> Path:
        """Absolute path of an image named in a row: absolute, else relative to the run folder
        (generated files), the input file's folder, or the working directory (DataFlow-MM inputs
        name files relative to where the pipeline runs), first that exists (see
        :func:`pixmill.file_roots.resolve_row_path`)."""
        return resolve_row_path(path, self.run_dir, self.input_dir)

    def readable(self, path: str) -> Path:
        """:meth:`resolve`, then the roots rule (:mod:`pixmill.file_roots`): the absolute path of a
        file a row names that may be read, or :class:`~pixmill.file_roots.OutsideRoots` (a
        ``ValueError``: the row fails). Operators that read or upload a row's files use this."""
        return run_roots(self.run_dir, self.input_dir, self.allowed_roots).check(self.resolve(path), named=path)

    def image_path(self, row_id: str, index: int = 0, suffix: str = ".png", tag: str = "") -> tuple[Path, str]:
        """Where to write the ``index``-th image of a row: (absolute path, path to store in the row).

        The name derives from the row id, the step folder and the index (never from prompt text),
        so names cannot collide across rows, steps or runs.
        """
        name = f"{file_stem(row_id)}{'-' + tag if tag else ''}-{index}{suffix}"
        absolute = self.step_dir / "images" / name
        return absolute, absolute.relative_to(self.run_dir).as_posix()

    def seed_for(self, row_id: str, index: int = 0) -> int:
        """The seed of the ``index``-th image of a row (see :func:`pixmill.rows.derive_seed`)."""
        return derive_seed(self.seed, row_id, index)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["committed_rows"] = None
        return state
