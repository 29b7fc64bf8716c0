"""Reading a run: its steps, their rows in upstream order, the images rows name, failures,
filtered rows and provenance, whatever the store.

``pixmill.Run(path)`` is the one public way to read a finished or running run folder; ``pixmill
status``, ``gallery`` and ``export``, the Python API and the tests all read runs through it::

    from pixmill import Run
    run = Run("runs/demo")
    for step in run.steps:
        print(step.name, step.complete, step.done, step.failed)
    rows = list(run.rows())          # the last step's rows, in input order
    first = list(run.rows(step=1))   # any step, by index
    judged = run.step("judge")       # by folder name, number or operator name
    for row in run.rows():
        print(run.images(row), run.provenance(row))   # image files (allowed ones only), their records
    for record in run.statuses():    # every row: ok, failed (with its reason) or filtered out (why)
        print(record.status, record.step, record.reason)

The folder layout itself is known to :mod:`pixmill.run_folder` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ConfigError
from .fields import image_paths, meta_field, result_image_field
from .file_roots import RunFiles, resolve_row_path
from .rows import ID_KEY
from .run_folder import RunFolder, StepFolder, StepState

OK, FAILED, FILTERED = "ok", "failed", "filtered"


@dataclass
class RunStep:
    """One step of a run as it stands on disk (read once: make a new :class:`Run` to see more)."""

    folder: StepFolder
    index: int = 0

    @property
    def name(self) -> str:
        """The folder's name (``01-generate-images``)."""
        return self.folder.name

    @property
    def operator(self) -> str:
        """The operator that made the step (``input`` for the input step)."""
        info = self.info
        return str(info.get("operator") or info.get("name") or self.name)

    @cached_property
    def info(self) -> dict[str, Any]:
        """The step's ``step.json``: operator, options, key, counts, complete or not."""
        return self.folder.info

    @property
    def complete(self) -> bool:
        return bool(self.info.get("complete"))

    @property
    def is_input(self) -> bool:
        return self.index == 0 or self.info.get("name") == "input"

    @cached_property
    def state(self) -> StepState:
        """What the step committed (from its ledger): parts, done ids, failures, drops, counts."""
        return self.folder.load_state()

    @property
    def counts(self) -> StepState:
        """:attr:`state`, or without the done-id set when nothing read it yet (cheaper for counts)."""
        if "state" in self.__dict__:
            return self.state
        if "_counts" not in self.__dict__:
            self.__dict__["_counts"] = self.folder.load_state(with_ids=False)
        return self.__dict__["_counts"]

    @property
    def done(self) -> int:
        """Input rows this step finished (kept, dropped or expanded)."""
        return self.counts.done_count

    @property
    def failed(self) -> int:
        return len(self.counts.failed)

    def rows(self) -> Iterator[dict]:
        """The step's committed output rows, in upstream order."""
        return self.folder.iter_rows(self.state)

    def failures(self) -> list[dict]:
        """The rows that failed: ``{"id", "reason", "row"}`` each."""
        return list(self.counts.failed.values())

    def damaged(self) -> dict[str, str]:
        """Committed parts that are missing or changed since, each with what is wrong."""
        return self.folder.damaged_parts(self.counts)

    def dropped_ids(self) -> set[str]:
        """Ids the step marked done but did not output (nor any child of: expanding operators
        name children ``parent/index``). When done equals output rows, the common case for 1:1
        steps, nothing was dropped and the step's rows need not be read."""
        state = self.state
        if self.is_input or state.rows == len(state.done) or not state.done:
            return set()
        kept: set[str] = set()
        for row in self.rows():
            rid = str(row.get(ID_KEY))
            kept.add(rid)
            while "/" in rid:  # every ancestor of a child row was kept, not dropped
                rid = rid.rsplit("/", 1)[0]
                kept.add(rid)
        return state.done - kept

    def drop_reason(self) -> str:
        """What dropped rows here: the operator and the options that decide (``dropped by filter
        (where=score >= 7)``)."""
        opts = {k: v for k, v in (self.info.get("options") or {}).items()
                if v not in (None, "", False) and k != "batch_size"}
        detail = ", ".join(f"{k}={v}" for k, v in opts.items())
        return f"dropped by {self.operator}" + (f" ({detail})" if detail else "")


@dataclass
class RowStatus:
    """A row of the run with its status: ``ok`` (in the last step's output), ``failed`` (with the
    step and reason) or ``filtered`` (dropped by a filter/head/dedupe step, with why)."""

    row: dict
    status: str
    step: str
    reason: str = ""


@dataclass
class StepSummary:
    """One step's figures: rows done / failed / filtered out and time (the gallery, the card)."""

    folder: str
    name: str
    done: int
    failed: int
    rows: int
    filtered: int
    seconds: float | None
    complete: bool
    serving: dict | None = None
    options: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Run:
    """A run folder, read (never written): its steps, rows, images, failures and provenance.

    ``allow_roots`` widens the folders whose image files :meth:`images` and :attr:`files` return
    (see :mod:`pixmill.file_roots`)."""

    def __init__(self, path: str | Path, allow_roots: Iterable[Path | str] = ()):
        self.path = Path(path)
        self._folder = RunFolder(self.path)
        self._allow_roots = tuple(allow_roots)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return self._folder.manifest

    @cached_property
    def steps(self) -> list[RunStep]:
        """The steps of the pipeline that last ran into the folder, input step first."""
        from .plugins import get_registry

        store = get_registry().get_store(self.manifest.get("store", "jsonl"))()
        return [RunStep(f, i) for i, f in enumerate(self._folder.steps(store))]

    def step(self, name: str | int) -> RunStep:
        """The step named by folder (``02-judge``), number (``2``), index or operator (``judge``)."""
        steps = self.steps
        if not steps:
            raise ConfigError(f"run {self.path} has no steps", "run a pipeline into it first")
        if isinstance(name, int):
            return steps[name]
        for i, step in enumerate(steps):
            if name in (step.name, step.name.split("-", 1)[0], str(i)):
                return step
        matches = [step for step in steps if step.name.split("-", 1)[-1] == name]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(s.name for s in steps)
        raise ConfigError(f"run {self.path} has {'several steps' if matches else 'no step'} named {name!r}",
                          f"name one of: {names}")

    def rows(self, step: int | str = -1) -> Iterator[dict]:
        """The rows of ``step`` (an index into :attr:`steps`, the last by default, or a name as
        :meth:`step` takes), in upstream order."""
        return self.step(step).rows()

    # -- the run as a whole ---------------------------------------------------------------------
    @cached_property
    def incomplete(self) -> str | None:
        """Why the run's output is not the pipeline's result (a step that did not finish, a damaged
        part, a pipeline that stopped early), or None when it is."""
        for step in self.steps:
            if not step.complete:
                return f"step {step.name} did not finish"
            damaged = step.damaged()
            if damaged:
                part, why = next(iter(damaged.items()))
                return f"step {step.name} has a damaged part ({part}: {why}); rerun the pipeline to repair it"
        if self.manifest.get("complete") is False:  # (runs made before this flag existed have no key)
            return f"the pipeline stopped after step {self.steps[-1].name}; later steps never ran"
        return None

    def _through(self, last: RunStep | None) -> list[RunStep]:
        return self.steps[: (last or self.step(-1)).index + 1]

    def statuses(self, last: RunStep | None = None, filtered: dict[str, int] | None = None) -> Iterator[RowStatus]:
        """Every row up to step ``last`` (the last step by default): its output rows, then each
        step's failed rows and the rows it dropped, each with its reason.

        ``filtered`` (if given) receives the exact number of rows each step dropped."""
        steps = self._through(last)
        for row in steps[-1].rows():
            yield RowStatus(row, OK, steps[-1].name)
        for k, step in enumerate(steps):
            for fail in step.state.failed.values():
                row = fail.get("row") if isinstance(fail.get("row"), dict) else {ID_KEY: fail.get("id")}
                yield RowStatus(row, FAILED, step.name, str(fail.get("reason", "")))
            dropped = step.dropped_ids()
            if filtered is not None and k:
                filtered[step.name] = len(dropped)
            if dropped:
                yield from _dropped_rows(step, steps[k - 1], dropped)

    def summaries(self, last: RunStep | None = None, filtered: dict[str, int] | None = None) -> list[StepSummary]:
        """Per step up to ``last``: done, failed, output rows, filtered out (done minus output, or
        the exact count when :meth:`statuses` computed it) and seconds."""
        out = []
        for step in self._through(last):
            info, state = step.info, step.state
            done = state.rows if step.is_input else len(state.done)
            dropped = 0 if step.is_input else (filtered or {}).get(step.name, max(0, done - state.rows))
            out.append(StepSummary(step.name, step.operator, done, len(state.failed), state.rows, dropped,
                                   info.get("seconds"), step.complete, info.get("serving"), info.get("options") or {}))
        return out

    # -- files ----------------------------------------------------------------------------------
    @property
    def input_dir(self) -> Path:
        """The folder of the run's input file (rows name input images relative to it)."""
        source = self.manifest.get("input") or {}
        return Path(source["path"]).parent if source.get("path") else Path.cwd()

    @cached_property
    def files(self) -> RunFiles:
        """The image files rows name, found and checked as for every reader (roots rule, cached)."""
        return RunFiles(self.path, self.input_dir, self._allow_roots)

    def resolve(self, path: str) -> Path:
        """The file a path in a row names (as a step's context resolves it; not checked)."""
        return resolve_row_path(path, self.path, self.input_dir)

    def images(self, row: dict, field: str | None = None) -> list[Path | None]:
        """The image files ``row[field]`` names (default: the row's newest images, see
        :mod:`pixmill.fields`), in order; None for a file that is missing or refused."""
        field = field or result_image_field(row)
        return [self.files.find(p) for p in image_paths(row.get(field)) or ()] if field else []

    def provenance(self, row: dict, field: str | None = None) -> list[dict | None]:
        """The provenance record of each image in ``row[field]`` (``<field>_meta``), in order."""
        field = field or result_image_field(row)
        if field is None:
            return []
        n = len(image_paths(row.get(field)) or ())
        metas = row.get(meta_field(field))
        metas = metas if isinstance(metas, list) else [metas] * n
        return [m if isinstance(m, dict) else None for m in (metas + [None] * n)[:n]]

    def image_columns(self, rows: Iterable[dict], named: Iterable[str] = ()) -> dict[str, bool]:
        """Image columns and whether each holds lists: the fields ``named``, else the fields whose
        values are image paths (or lists of them) of which at least one file exists."""
        named = set(named)
        is_list: dict[str, bool] = {}
        confirmed: set[str] = set(named)
        rejected: set[str] = set()
        for row in rows:
            for key, value in row.items():
                if key in rejected or key == ID_KEY or (named and key not in named):
                    continue
                paths = image_paths(value)
                if paths is None:
                    if value is not None and key not in named:
                        rejected.add(key)
                        confirmed.discard(key)
                        is_list.pop(key, None)
                    continue
                if isinstance(value, (list, tuple)):
                    is_list[key] = True
                else:
                    is_list.setdefault(key, False)
                if key not in confirmed and any(self.files.named_file(p) for p in paths):
                    confirmed.add(key)
        return {k: is_list.get(k, False) for k in is_list if k in confirmed} | \
            {k: False for k in named if k not in is_list}


def _dropped_rows(step: RunStep, previous: RunStep, dropped: set[str]) -> Iterator[RowStatus]:
    """The upstream rows ``step`` dropped, with the reason the operator recorded (duplicate_of,
    nsfw...) when it did."""
    reason = step.drop_reason()
    recorded = step.state.dropped
    for row in previous.rows():
        rid = row.get(ID_KEY)
        if rid not in dropped:
            continue
        why = recorded.get(rid)
        if why:
            info = {k: v for k, v in why.items() if k not in (ID_KEY, "reason")}
            yield RowStatus({**row, **info}, FILTERED, step.name, f"{reason}: {why.get('reason', '')}")
        else:
            yield RowStatus(row, FILTERED, step.name, reason)


__all__ = ["FAILED", "FILTERED", "OK", "Run", "RowStatus", "RunStep", "StepSummary"]
