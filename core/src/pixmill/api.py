"""The Python API in the DataFlow-MM shape: a storage that advances step by step, and operators
whose ``run(storage, input_key=..., output_key=...)`` does one step through the same runner as the
CLI."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterator

from .operator import Operator
from .pipeline import PipelineSpec, StepSpec, input_reader, step_options
from .plugins import get_registry
from .progress import Progress, make_progress
from .rows import ID_KEY
from .runner import Runner, StepResult, write_summary
from .serving import check_servings


class Storage:
    """A run folder that pipelines write step by step.

    ::

        storage = Storage(input="prompts.jsonl", out="runs/demo")
        Template(template="a photo of {prompt}").run(storage.step(), output_key="prompt")
        Filter(where="len(prompt) < 200").run(storage.step())
        rows = list(storage.rows())

    Each ``operator.run(storage.step())`` runs the next step, resuming from what the run folder
    already holds, exactly as ``pixmill run`` does: the same runner, the same progress output (a
    bar on a terminal, log lines otherwise; ``quiet=True`` for none), the run's ``pipeline.yaml``
    rewritten after each step (so ``pixmill run RUN/pipeline.yaml`` reruns it), every serving made
    so far checked before the first step, and each step's fields checked before its model loads.
    ``storage.close()`` (or a ``with`` block) releases the run folder.
    """

    def __init__(self, input: str | Path | None = None, out: str | Path = "runs/pixmill", store: str = "jsonl",
                 executor: str = "local", executor_options: dict[str, Any] | None = None, seed: int = 0,
                 retry_failed: bool = False, skip_bad_lines: bool = False, id_key: str = ID_KEY,
                 progress: Progress | None = None, quiet: bool = False,
                 allow_roots: list[str | Path] | None = None):
        registry = get_registry()
        self.input = Path(input) if input is not None else None
        self.out = Path(out)
        self._reader = input_reader(registry, self.input)
        if progress is None:
            progress = make_progress(quiet=quiet)
            _show_progress_logs()
        self._runner = Runner(self.out, registry.get_store(store)(),
                              registry.get_executor(executor)(**(executor_options or {})),
                              seed=seed, retry_failed=retry_failed, progress=progress,
                              allow_roots=allow_roots or ())
        self._spec = PipelineSpec(steps=[], out=self.out, input=self.input, store=store, executor=executor,
                                  executor_options=dict(executor_options or {}), seed=seed,
                                  retry_failed=retry_failed, skip_bad_lines=skip_bad_lines, id_key=id_key,
                                  allow_roots=[str(r) for r in allow_roots or ()])
        self._operators: list[Operator] = []
        self._source_opts = {"skip_bad_lines": skip_bad_lines, "id_key": id_key}
        self._open = False

    def _ensure_open(self) -> Runner:
        if not self._open:
            check_servings()
            self._runner.__enter__()
            self._open = True
            self._runner.run_source(self.input, reader=self._reader, **self._source_opts)
        return self._runner

    def step(self) -> Storage:
        """Advance to the next step (DataFlow-MM's ``storage.step()``): the next ``run`` writes it."""
        return self

    def run_operator(self, op: Operator) -> StepResult:
        runner = self._ensure_open()
        if op.serving is not None:
            check_servings([op.serving])
        runner.check_fields([op])
        self._operators.append(op)
        self._spec.steps.append(StepSpec(op.name, step_options(op)))
        runner.write_pipeline_yaml(self._spec.to_yaml(self._operators, relative_to=self.out,
                                                      executor=runner.executor))
        result = runner.run_step(op)
        runner.mark_complete()  # the run is complete as far as the script has taken it
        write_summary(self.out, runner.results)
        return result

    def rows(self) -> Iterator[dict]:
        """Stream the rows of the latest step."""
        return self._ensure_open().last_rows()

    def read(self, output_type: str = "dict") -> Any:
        """All rows of the latest step: a list of dicts, or a pandas DataFrame with ``"dataframe"``."""
        rows = list(self.rows())
        if output_type == "dataframe":
            import pandas as pd

            return pd.DataFrame(rows)
        return rows

    @property
    def results(self) -> list[StepResult]:
        return list(self._runner.results)

    def close(self) -> None:
        if self._open:
            self._runner.__exit__(None, None, None)
            self._open = False

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # release the lock if the user forgot close()
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _show_progress_logs() -> None:
    """Without a logging set-up of the script's own, let progress log lines reach stderr (as the
    CLI's do); a script that configures logging decides for itself."""
    if logging.getLogger().handlers:
        return
    logger = logging.getLogger("pixmill.progress")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class FileStorage(Storage):
    """DataFlow-MM's ``FileStorage`` signature, for pipelines ported as they are::

        FileStorage(first_entry_file_name="data.jsonl", cache_path="./cache", cache_type="jsonl")
    """

    def __init__(self, first_entry_file_name: str | Path | None = None, cache_path: str | Path = "./cache",
                 file_name_prefix: str = "pixmill_cache_step", cache_type: str = "jsonl", **kwargs: Any):
        del file_name_prefix  # step folders are named by index and operator instead
        super().__init__(input=first_entry_file_name, out=cache_path, store=cache_type, **kwargs)
