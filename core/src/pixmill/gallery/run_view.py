"""A run as rows to show or export: every row with its status, image columns found by value,
prompts, scores and per-step figures.

Both ``pixmill gallery`` and ``pixmill export`` read a run through :class:`RunView`, so they agree
on which fields are images, where an image file is, and which rows failed or were filtered out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import ConfigError
from ..fields import DISPLAY_TEXT_FIELDS
from ..file_roots import check_image_file, run_roots
from ..rows import ID_KEY, prompt_text
from ..run import Run
from ..run_folder import RunFolder, StepFolder, StepState

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Fields tried in order for the text shown as a row's prompt (edits: the instruction first).

OK, FAILED, FILTERED = "ok", "failed", "filtered"


def image_paths(value: Any) -> list[str] | None:
    """The image paths ``value`` holds, if it looks like an image field value, else None.

    One path, a list of paths, or ``{"path": ...}`` structs; ``""`` placeholders (DataFlow-MM
    inputs name images still to be made that way) count as no image.
    """
    if isinstance(value, str):
        return [value] if value.lower().endswith(IMAGE_SUFFIXES) else ([] if value == "" else None)
    if isinstance(value, dict):
        path = value.get("path")
        return [path] if isinstance(path, str) and path.lower().endswith(IMAGE_SUFFIXES) else None
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            paths = image_paths(item)
            if paths is None or isinstance(item, (list, tuple)):
                return None
            out.extend(paths)
        return out
    return None


class PathResolver:
    """Finds the file an image path in a row names, as :meth:`pixmill.StepContext.resolve` does:
    absolute, else relative to the run folder (generated images), the input file's folder, or the
    working directory. Results are cached: a run names the same input image many times.

    A file outside the allowed roots (:mod:`pixmill.file_roots`; symlinks resolved) or that is not
    an image is refused: :meth:`resolve` gives None and :attr:`refused` holds the reason, so it is
    never copied into an export or linked from a gallery."""

    def __init__(self, run_dir: Path, input_dir: Path, allow_roots: Iterable[Path | str] = ()):
        self.run_dir = run_dir.resolve()
        self.input_dir = input_dir.resolve()
        self.roots = run_roots(self.run_dir, self.input_dir, allow_roots)
        self.refused: dict[str, str] = {}  # path as the row names it -> why it is not read
        self._cache: dict[str, Path | None] = {}

    def resolve(self, path: str) -> Path | None:
        """The existing, allowed image file ``path`` names, or None."""
        try:
            return self._cache[path]
        except KeyError:
            pass
        p = Path(path).expanduser()
        found = None
        for candidate in ([p] if p.is_absolute() else [self.run_dir / p, self.input_dir / p, Path.cwd() / p]):
            if candidate.is_file():
                try:
                    found = self.roots.check(candidate, named=path)
                    check_image_file(found, named=path)
                except ValueError as exc:
                    self.refused[path] = str(exc)
                    found = None
                break
        self._cache[path] = found
        return found

    def named_file(self, path: str) -> bool:
        """Whether ``path`` names an existing file, allowed or refused (an image column's value)."""
        return self.resolve(path) is not None or path in self.refused

    def is_generated(self, absolute: Path) -> bool:
        """Whether a resolved image was written by the run (else it came with the input)."""
        return _is_under(absolute, self.run_dir)


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


@dataclass
class StepSummary:
    """One step's figures: rows done / failed / filtered out and time, as the gallery and card show."""

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


@dataclass
class ViewRow:
    """A row of the run with its status: ``ok`` (in the last step's output), ``failed`` (with the
    step and reason) or ``filtered`` (dropped by a filter/head/dedupe step)."""

    row: dict
    status: str
    step: str
    reason: str = ""


class RunView:
    """Reads a run folder for presentation: rows with statuses, image columns, per-step figures."""

    def __init__(self, run_dir: Path | str, image_keys: Iterable[str] = (), prompt_key: str | None = None,
                 score_key: str = "scores", allow_roots: Iterable[Path | str] = (), step: str | None = None):
        self.run_dir = Path(run_dir)
        self.run = RunFolder(self.run_dir)
        self.steps: list[StepFolder] = [s.folder for s in Run(self.run_dir).steps]
        if not self.steps:
            raise ConfigError(f"run {self.run_dir} has no steps", "run a pipeline into it first")
        self.manifest = self.run.manifest
        # Why the run's result is not final (killed, interrupted, a step that failed), or None.
        self.incomplete = incomplete_reason(self.manifest, self.steps)
        self.all_steps = list(self.steps)
        if step is not None:
            self.steps = self.steps[:find_step(self.steps, step, self.run_dir) + 1]
        source = self.manifest.get("input") or {}
        input_dir = Path(source["path"]).parent if source.get("path") else Path.cwd()
        self.resolver = PathResolver(self.run_dir, input_dir, allow_roots)
        self.user_image_keys = tuple(image_keys)
        self.prompt_key = prompt_key
        self.score_key = score_key
        self._states: dict[str, StepState] = {}

    # -- steps ----------------------------------------------------------------------------------
    def state(self, step: StepFolder) -> StepState:
        if step.name not in self._states:
            self._states[step.name] = step.load_state()
        return self._states[step.name]

    @property
    def last(self) -> StepFolder:
        return self.steps[-1]

    def output_rows(self) -> Iterator[dict]:
        """The rows of the run's result: the last step's output."""
        return self.last.iter_rows(self.state(self.last))

    def step_summaries(self, filtered: dict[str, int] | None = None) -> list[StepSummary]:
        """Per step: done, failed, output rows, filtered out (done minus output, or the exact count
        when :meth:`iter_all` computed it) and seconds."""
        out = []
        for step in self.steps:
            info, state = step.info, self.state(step)
            is_input = info.get("name") == "input" or step is self.steps[0]
            done = state.rows if is_input else len(state.done)
            dropped = (filtered or {}).get(step.name, max(0, done - state.rows))
            out.append(StepSummary(step.name, info.get("operator", info.get("name", step.name)), done,
                                   len(state.failed), state.rows, 0 if is_input else dropped,
                                   info.get("seconds"), bool(info.get("complete")), info.get("serving"),
                                   info.get("options") or {}))
        return out

    # -- rows -----------------------------------------------------------------------------------
    def iter_all(self, filtered_counts: dict[str, int] | None = None) -> Iterator[ViewRow]:
        """Every row: the output rows, then each step's failed rows and the rows it dropped.

        ``filtered_counts`` (if given) receives the exact number of rows each step dropped.
        """
        for row in self.output_rows():
            yield ViewRow(row, OK, self.last.name)
        for k, step in enumerate(self.steps):
            state = self.state(step)
            for fail in state.failed.values():
                row = fail.get("row") if isinstance(fail.get("row"), dict) else {ID_KEY: fail.get("id")}
                yield ViewRow(row, FAILED, step.name, str(fail.get("reason", "")))
            if k == 0:
                continue
            dropped = self._dropped_ids(step, state)
            if filtered_counts is not None:
                filtered_counts[step.name] = len(dropped)
            if dropped:
                reason = _drop_reason(step)
                recorded = state.dropped  # drops the operator explained (duplicate_of, nsfw...)
                prev = self.steps[k - 1]
                for row in prev.iter_rows(self.state(prev)):
                    rid = row.get(ID_KEY)
                    if rid in dropped:
                        why = recorded.get(rid)
                        if why:
                            info = {k: v for k, v in why.items() if k not in (ID_KEY, "reason")}
                            yield ViewRow({**row, **info}, FILTERED, step.name, f"{reason}: {why.get('reason', '')}")
                        else:
                            yield ViewRow(row, FILTERED, step.name, reason)

    def _dropped_ids(self, step: StepFolder, state: StepState) -> set[str]:
        """Ids the step marked done but did not output (nor any child of: expanding operators
        name children ``parent/index``). When done equals output rows, the common case for 1:1
        steps, nothing was dropped and the step's rows need not be read."""
        if state.rows == len(state.done) or not state.done:
            return set()
        kept: set[str] = set()
        for row in step.iter_rows(state):
            rid = str(row.get(ID_KEY))
            kept.add(rid)
            while "/" in rid:  # every ancestor of a child row was kept, not dropped
                rid = rid.rsplit("/", 1)[0]
                kept.add(rid)
        return state.done - kept

    # -- fields ---------------------------------------------------------------------------------
    def detect_image_columns(self, rows: Iterable[dict]) -> dict[str, bool]:
        """Image columns and whether each holds lists: the fields the user named, else the fields
        whose values are image paths (or lists of them) of which at least one file exists."""
        named = set(self.user_image_keys)
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
                if key not in confirmed and any(self.resolver.named_file(p) for p in paths):
                    confirmed.add(key)
        return {k: is_list.get(k, False) for k in is_list if k in confirmed} | \
            {k: False for k in named if k not in is_list}

    def prompt_of(self, row: dict) -> tuple[str | None, str]:
        """(field, text) of the row's prompt or instruction."""
        keys = (self.prompt_key,) if self.prompt_key else DISPLAY_TEXT_FIELDS
        for key in keys:
            value = row.get(key) if key else None
            if value in (None, "", []):
                continue
            try:
                text = prompt_text(value)
            except (ValueError, TypeError, AttributeError):
                text = str(value)
            if text.strip():
                return key, text
        return None, ""

    def scores_of(self, row: dict) -> tuple[float | None, dict[str, float], str]:
        """(overall, numeric sub-scores, rationale) from the score field (a dict, or a number)."""
        value = row.get(self.score_key)
        if isinstance(value, bool) or value is None:
            return None, {}, ""
        if isinstance(value, (int, float)):
            return float(value), {}, ""
        if not isinstance(value, dict):
            return None, {}, ""
        overall = value.get("overall")
        overall = float(overall) if isinstance(overall, (int, float)) and not isinstance(overall, bool) else None
        subs = {k: float(v) for k, v in value.items()
                if k != "overall" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        rationale = value.get("rationale")
        return overall, subs, rationale if isinstance(rationale, str) else ""


def incomplete_reason(manifest: dict, steps: list[StepFolder]) -> str | None:
    """Why a run's output is not the pipeline's result, or None when it is."""
    for step in steps:
        if not step.info.get("complete"):
            return f"step {step.name} did not finish"
        damaged = step.damaged_parts(step.load_state(with_ids=False))
        if damaged:
            part, why = next(iter(damaged.items()))
            return f"step {step.name} has a damaged part ({part}: {why}); rerun the pipeline to repair it"
    if manifest.get("complete") is False:  # (runs made before this flag existed have no key)
        return f"the pipeline stopped after step {steps[-1].name}; later steps never ran"
    return None


def find_step(steps: list[StepFolder], name: str, run_dir: Path) -> int:
    """The index of the step named by folder (``02-judge``), number (``2``) or operator (``judge``)."""
    for i, step in enumerate(steps):
        if name in (step.name, step.name.split("-", 1)[0], str(i)):
            return i
    matches = [i for i, step in enumerate(steps) if step.name.split("-", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(s.name for s in steps)
    raise ConfigError(f"run {run_dir} has {'several steps' if matches else 'no step'} named {name!r}",
                      f"name one of: {names}")


def _drop_reason(step: StepFolder) -> str:
    info = step.info
    name = info.get("operator") or info.get("name") or step.name
    opts = {k: v for k, v in (info.get("options") or {}).items() if v not in (None, "", False) and k != "batch_size"}
    detail = ", ".join(f"{k}={v}" for k, v in opts.items())
    return f"dropped by {name}" + (f" ({detail})" if detail else "")


def relpath(target: Path, start: Path) -> str:
    """``target`` relative to the folder ``start``, with forward slashes (for HTML and rows)."""
    return Path(os.path.relpath(target, start)).as_posix()


def file_href(target: Path, start: Path) -> str:
    """A link from a page in ``start`` to ``target``: always a relative URL, percent-encoded and
    starting with ``./`` or ``../``, so no file name (``javascript:alert(1).png``,
    ``https:x.png``, ``#x.png``) can turn into a script, another site or an in-page anchor."""
    from urllib.parse import quote

    rel = quote(relpath(target, start))
    return rel if rel.startswith("../") else "./" + rel
