"""The runner: step keys, resume, batching, atomic commits, failure records, progress.

All the hard parts of a pipeline live here once; the CLI, YAML pipelines and the Python API all go
through :class:`Runner`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import compress, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from . import __version__, interrupt
from .context import StepContext
from .errors import ConfigError, InputError, PixmillError
from .executor import Executor, StepTask
from .files import write_atomic
from .input_images import has_embedded_images, write_embedded_images
from .journal import Journal
from .operator import Dropped, Failed, Operator
from .progress import Progress, make_progress
from .rows import ID_KEY, child_id
from .run_folder import RunFolder, StepFolder, StepState, write_json
from .store import Store

log = logging.getLogger("pixmill.runner")

SOURCE_COMMIT_ROWS = 50_000
FAST_COMMIT_SECONDS = 1.0  # commit at most once a second (or every 50k rows); the journal keeps the rest
SLOW_BATCH_SECONDS = 0.05  # a model-free batch that took longer is committed at once (it has no journal)
ALWAYS_HASH_BYTES = 64 * 1024**2  # inputs up to this size are hashed on every run (~0.1 s)


@dataclass
class StepResult:
    """The summary of one step after a run: totals over all runs, and what this run did."""

    index: int
    name: str
    folder: str
    key: str
    done: int
    failed: int
    rows: int
    new_done: int = 0
    new_failed: int = 0
    seconds: float = 0.0
    cached: bool = False
    skipped_lines: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_key(identity: dict[str, Any], upstream_key: str, store: str) -> str:
    """Hash of what determines a step's output: its identity, its store and its upstream step."""
    blob = json.dumps({"step": identity, "upstream": upstream_key, "store": store}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_get_id = itemgetter(ID_KEY)
_NONE = type(None)


def _collect(batch: list[dict], positions: list[int], outcomes: list, rows: list[dict], row_pos: list[int],
             done: list[str], failed: list[dict], dropped: list[dict]) -> int:
    """Sort a batch's outcomes into output rows (with their upstream positions), done ids, failures
    and recorded drops; returns the failure count.

    The common cases (every row kept or dropped, ids untouched) run as bulk operations, which keeps
    the runner's own cost per row far below any operator's.
    """
    ids = list(map(_get_id, batch))
    kinds = set(map(type, outcomes))
    if kinds <= {dict, _NONE}:
        if _NONE in kinds:
            mask = [o is not None for o in outcomes]
            kept, kept_ids, kept_pos = list(compress(outcomes, mask)), list(compress(ids, mask)), compress(positions, mask)
        else:
            kept, kept_ids, kept_pos = outcomes, ids, positions
        if [o.get(ID_KEY) for o in kept] == kept_ids:
            rows.extend(kept)
            row_pos.extend(kept_pos)
            done.extend(ids)
            return 0
    n_failed = 0
    for row, rid, pos, out in zip(batch, ids, positions, outcomes, strict=True):
        if type(out) is dict:
            if out.get(ID_KEY) != rid:
                out = {ID_KEY: rid, **{k: v for k, v in out.items() if k != ID_KEY}}
            rows.append(out)
            row_pos.append(pos)
            done.append(rid)
        elif out is None:
            done.append(rid)
        elif type(out) is Dropped:
            done.append(rid)
            dropped.append({"id": rid, "reason": out.reason, **out.info})
        elif isinstance(out, list):
            rows.extend({ID_KEY: child_id(rid, i), **{k: v for k, v in c.items() if k != ID_KEY}}
                        for i, c in enumerate(out))
            row_pos.extend([pos] * len(out))
            done.append(rid)
        else:
            reason = out.reason if isinstance(out, Failed) else f"operator returned {type(out).__name__}"
            failed.append({"id": rid, "reason": reason, "row": row})
            n_failed += 1
    return n_failed


def _commit_in_order(folder: StepFolder, state: StepState, rows: list[dict], positions: list[int], done: list[str],
                     failed: list[dict], dropped: list[dict]) -> None:
    """Commit results whose batches may have finished out of order: rows sorted by position."""
    if positions != sorted(positions):  # C-speed check; almost always already in order
        order = sorted(range(len(rows)), key=positions.__getitem__)
        rows, positions = [rows[i] for i in order], [positions[i] for i in order]
    folder.commit(state, rows, done, failed, positions=positions or None, dropped=dropped)


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect garbage less often while a step streams rows.

    Millions of short-lived row dicts trigger a full collection every few thousand allocations,
    and each one walks every live object: profiling showed half of a fast step's time there. Rows
    form no reference cycles, so freezing what exists and collecting rarely loses nothing.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _stat(path: Path | None) -> list | None:
    if path is None:
        return None
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def chunked(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


class Runner:
    """Runs steps into a run folder, one after another, each resuming from what is committed.

    Use as a context manager (it holds the run folder's lock)::

        with Runner(out, store, executor) as runner:
            runner.run_source(Path("prompts.jsonl"))
            runner.run_step(operator)
    """

    def __init__(
        self,
        out: Path,
        store: Store,
        executor: Executor,
        seed: int = 0,
        retry_failed: bool = False,
        progress: Progress | None = None,
        allow_roots: Iterable[Path | str] = (),
    ):
        self.run = RunFolder(Path(out))
        self.store = store
        self.executor = executor
        self.seed = seed
        self.retry_failed = retry_failed
        self.progress = progress or make_progress()
        self.allow_roots = tuple(str(Path(r).expanduser().resolve()) for r in allow_roots)
        self.input_dir = Path.cwd()
        self.results: list[StepResult] = []
        self._steps: list[dict[str, Any]] = []
        self._last: tuple[StepFolder, StepState, str] | None = None
        self._manifest: dict[str, Any] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Runner:
        self.run.lock()
        old = self.run.manifest
        self._manifest = {
            "pixmill": __version__,
            "created": old.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "store": self.store.name,
            "executor": self.executor.describe(),
            "seed": self.seed,
            "complete": False,  # until the whole pipeline has run (export refuses a run that has not)
        }
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.executor.close()
        finally:
            self.run.unlock()

    def _write_manifest(self) -> None:
        self._manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._manifest["steps"] = self._steps
        self.run.write_manifest(self._manifest)

    # -- step 0: the input ----------------------------------------------------------------------
    def run_source(self, input_path: Path | None, skip_bad_lines: bool = False, id_key: str = ID_KEY,
                   reader: Store | None = None) -> StepResult:
        """Read the input file into step 0, giving every row a stable id.

        The id is the row's ``id_key`` field when it has one (it must be unique), otherwise the
        record's position in the file. Step 0's key is the file's content hash, so editing the input
        recomputes the pipeline and an unchanged input costs nothing.
        """
        started = time.monotonic()
        self._manifest["complete"] = False
        if input_path is None:
            identity: dict[str, Any] = {"source": "seed-row"}
            self.input_dir = Path.cwd()
            self._manifest["input"] = None
        else:
            input_path = Path(input_path)
            if not input_path.is_file():
                raise InputError(f"input file {input_path} does not exist", "check the --input path")
            if reader is None:
                raise ConfigError(f"no store reads {input_path.suffix or 'extension-less'} files ({input_path})",
                                  "use a .jsonl file, or install pixmill-parquet for .parquet")
            identity = {"source": "file", "sha256": self._input_hash(input_path), "id_key": id_key,
                        "skip_bad_lines": skip_bad_lines, "reader": reader.name}
            self.input_dir = input_path.resolve().parent
            self._manifest["input"] = {"path": str(input_path.resolve()), "sha256": identity["sha256"]}
        key = step_key(identity, "", self.store.name)
        folder = self.run.step_folder(0, "input", key, self.store)
        info = folder.info
        cached = bool(info.get("complete"))
        state = folder.load_state(clean=not cached, with_ids=not cached)
        if cached and folder.damaged_parts(state):  # a damaged copy of the input: copy it again
            cached, state = False, folder.load_state(clean=True)
        skipped = int(info.get("skipped_lines", 0))
        self.progress.step_started(folder.name, total=None, cached=cached)
        if not cached:
            if state.commits:  # a crash mid-copy: the copy is cheap, start it over
                state = folder.reset()
            # The folder says which input it copies before the first part lands, so a killed copy
            # is found again by its key (and restarted) instead of being retired as unknown.
            folder.write_info({"name": "input", "index": 0, "key": key, "source": identity, "complete": False})
            rows = self._source_rows(input_path, reader, id_key, skip_bad_lines, folder)
            with relaxed_gc():
                for chunk in chunked(rows, SOURCE_COMMIT_ROWS):
                    folder.commit(state, chunk, [], [])
                    self.progress.advanced(len(chunk), 0)
            skipped = self._skipped
            folder.write_info({"name": "input", "index": 0, "key": key, "source": identity, "complete": True,
                               "input_stat": _stat(input_path),
                               "done": state.rows, "failed": 0, "rows": state.rows, "skipped_lines": skipped,
                               "seconds": round(time.monotonic() - started, 3), "pixmill": __version__})
        result = StepResult(0, "input", folder.name, key, state.rows, 0, state.rows,
                            new_done=0 if cached else state.rows, seconds=time.monotonic() - started,
                            cached=cached, skipped_lines=skipped)
        self._steps = [{"index": 0, "folder": folder.name, "key": key, "operator": "input", "source": identity}]
        self._last = (folder, state, key)
        self.results = [result]
        self._write_manifest()
        self.progress.step_finished(result)
        return result

    def _input_hash(self, path: Path) -> str:
        """The input's sha256. An input up to ``ALWAYS_HASH_BYTES`` is hashed on every run (cheap,
        and it catches an in-place edit that kept size and mtime); a larger one's hash is reused
        from the last run when size, mtime and inode are unchanged (as make and git do), so
        rerunning over a large input does not re-read it."""
        old = self.run.step_info(0, "input")
        stat = _stat(path)
        if stat is not None and stat[0] <= ALWAYS_HASH_BYTES:
            return file_sha256(path)
        if old.get("complete") and old.get("input_stat") == stat and old.get("source", {}).get("sha256"):
            return old["source"]["sha256"]
        return file_sha256(path)

    def _source_rows(self, input_path: Path | None, reader: Store | None, id_key: str, skip_bad: bool,
                     folder: StepFolder) -> Iterator[dict]:
        self._skipped = 0
        if input_path is None or reader is None:
            yield {ID_KEY: "0"}
            return
        folder.write_skipped([])  # a rerun's skipped lines are its own
        bad: list[dict] = []

        def on_bad(lineno: int, text: str, error: str) -> None:
            bad.append({"file": str(input_path), "line": lineno, "error": error, "text": text[:10000]})
            log.warning("%s:%d: skipped a malformed line (%s)", input_path, lineno, error)

        seen: set[str] = set()
        reader.check_input(input_path, self.store)  # before any work: columns the step files cannot hold
        embedded_images = reader.name != "jsonl"  # JSON has no bytes: only binary formats embed images
        for n, row in enumerate(reader.read_part(input_path, on_bad_line=on_bad if skip_bad else None)):
            if id_key in row and row[id_key] is not None:
                rid = str(row[id_key])
                if rid in seen:
                    raise InputError(f"{input_path}: record {n + len(bad) + 1} repeats id {rid!r}",
                                     f"make the {id_key!r} field unique, or pass --id-key with another field")
                seen.add(rid)
            else:
                rid = str(n + len(bad))
            if ID_KEY in row:
                row = {k: v for k, v in row.items() if k != ID_KEY}
            if embedded_images and has_embedded_images(row):  # e.g. a Hugging Face dataset's image column
                row = write_embedded_images(row, rid, folder.path / "images", self.run.path)
            out = {ID_KEY: rid}  # the id first, so part files read well
            out.update(row)
            yield out
        folder.write_skipped(bad)
        self._skipped = len(bad)

    # -- checks before any model loads -----------------------------------------------------------
    def check_fields(self, operators: list[Operator], sample: int = 100) -> None:
        """Fail before any work if a step reads a field that neither the rows so far (the first
        ``sample`` rows of the last step run) nor an earlier step of ``operators`` provides."""
        have: set[str] = set()
        for row in islice(self.last_rows(), sample):
            have.update(row)
        if not have:
            return  # nothing to judge by (an empty input)
        for index, op in enumerate(operators, len(self._steps)):
            for alternatives in op.fields_read():
                if not any(name.split(".", 1)[0] in have for name in alternatives):
                    wanted = repr(alternatives[0]) if len(alternatives) == 1 else "any of " + ", ".join(alternatives)
                    raise ConfigError(
                        f"step {index} ({op.name}) reads {wanted}, but the rows reaching it have no such field "
                        f"(they have: {', '.join(sorted(have - {ID_KEY}))})",
                        f"pass the option of {op.name} that names the field (see `pixmill run {op.name} --help`)")
            have.update(op.fields_written())

    # -- steps 1..n -----------------------------------------------------------------------------
    def run_step(self, op: Operator) -> StepResult:
        """Run one operator over the previous step's rows, resuming from what is committed."""
        if self._last is None:
            raise PixmillError("no input step yet", "call run_source() first")
        up_folder, up_state, up_key = self._last
        self._manifest["complete"] = False
        index = len(self._steps)
        key = step_key(op.identity(), up_key, self.store.name)
        folder = self.run.step_folder(index, op.name, key, self.store)
        info = folder.info
        upstream = {"key": up_key, "commits": up_state.commits}
        # An interrupted step has no final count yet: its ledger may still hold failures to retry.
        retry = self.retry_failed and (bool(info.get("failed")) or not info.get("complete"))
        cached = bool(info.get("complete")) and info.get("upstream") == upstream and not retry
        state = folder.load_state(clean=not cached, with_ids=not cached)
        if cached and folder.damaged_parts(state):  # repaired below: only the damaged part's rows rerun
            cached, state = False, folder.load_state(clean=True)
        started = time.monotonic()
        before_done, before_failed = state.done_count, len(state.failed)
        skip = state.done if retry or not state.failed else state.done | state.failed.keys()
        total = max(0, up_state.rows - len(skip)) if not cached else 0
        self.progress.step_started(folder.name, total=total, cached=cached)
        entry = {"index": index, "folder": folder.name, "key": key, **op.describe()}
        self._steps.append(entry)
        if not cached:
            self._write_manifest()  # `pixmill status` can follow a long step while it runs
            ctx = StepContext(run_dir=self.run.path.resolve(), step_dir=folder.path.resolve(),
                              input_dir=self.input_dir, seed=self.seed, step_name=folder.name,
                              committed_rows=lambda: folder.iter_rows(state), committed_count=state.rows,
                              allowed_roots=self.allow_roots)
            folder.write_info({**self._step_info(index, op, key, upstream), "complete": False,
                               "seconds": info.get("seconds", 0.0)})
            self._execute(op, ctx, folder, state, up_folder.iter_rows(up_state), skip)
            folder.write_failed(state)
            folder.write_dropped(state)
            folder.write_info({**self._step_info(index, op, key, upstream), "complete": True,
                               "done": state.done_count, "failed": len(state.failed), "rows": state.rows,
                               "seconds": round(info.get("seconds", 0.0) + time.monotonic() - started, 3)})
        result = StepResult(index, op.name, folder.name, key, state.done_count, len(state.failed), state.rows,
                            new_done=state.done_count - before_done,
                            new_failed=max(0, len(state.failed) - before_failed),
                            seconds=time.monotonic() - started, cached=cached)
        self._last = (folder, state, key)
        self.results.append(result)
        self._write_manifest()
        self.progress.step_finished(result)
        return result

    def _step_info(self, index: int, op: Operator, key: str, upstream: dict) -> dict[str, Any]:
        return {"name": op.name, "index": index, "key": key, "upstream": upstream, **op.describe(),
                "pixmill": __version__}

    def _execute(self, op: Operator, ctx: StepContext, folder: StepFolder, state: StepState,
                 upstream: Iterator[dict], skip: set[str]) -> None:
        # A model step keeps each finished batch in the step's journal at once (one write, see
        # pixmill.journal) and commits a part at most once a second, so a kill -9 redoes only the
        # batches in flight while a million-row step still writes few parts. Cheap model-free
        # batches are grouped into a commit a second (or every 50k rows) without a journal; one
        # that took real work (over SLOW_BATCH_SECONDS) is committed at once.
        journal = Journal(folder.path) if op.serving is not None else None
        if journal is not None:
            skip = skip | self._recover(journal, folder, state)
        # Every upstream row has a position (its index in upstream order, done rows included, so
        # positions survive resumes); committed rows carry it, so the output is in upstream order
        # whatever order batches finish in.
        pos_of: dict[int, Sequence[int]] = {}  # id(batch) -> positions of its rows, while in flight

        def batches() -> Iterator[list[dict]]:
            if not skip:  # a fresh step: positions are a plain count
                start = 0
                while batch := list(islice(upstream, op.batch_size)):
                    pos_of[id(batch)] = range(start, start + len(batch))
                    start += len(batch)
                    yield batch
                return
            todo = ((p, r) for p, r in enumerate(upstream) if r[ID_KEY] not in skip)
            while chunk := list(islice(todo, op.batch_size)):
                batch = [r for _, r in chunk]
                pos_of[id(batch)] = [p for p, _ in chunk]
                yield batch

        rows: list[dict] = []
        row_pos: list[int] = []
        done: list[str] = []
        failed: list[dict] = []
        dropped: list[dict] = []
        last = last_result = time.monotonic()

        def flush() -> None:
            nonlocal rows, row_pos, done, failed, dropped, last
            if rows or done or failed:
                _commit_in_order(folder, state, rows, row_pos, done, failed, dropped)
                if journal is not None:
                    journal.clear()
            rows, row_pos, done, failed, dropped, last = [], [], [], [], [], time.monotonic()

        # After a first Ctrl-C no batch is handed out; those in flight finish and are committed.
        with relaxed_gc(), interrupt.graceful():
            try:
                for batch, outcomes in self.executor.map(StepTask(op, ctx), interrupt.until_requested(batches())):
                    n_rows, n_done, n_failed, n_dropped = len(rows), len(done), len(failed), len(dropped)
                    bad = _collect(batch, pos_of.pop(id(batch)), outcomes, rows, row_pos, done, failed, dropped)
                    if journal is not None:
                        journal.append(rows=rows[n_rows:], positions=row_pos[n_rows:], done=done[n_done:],
                                       failed=failed[n_failed:], dropped=dropped[n_dropped:])
                    self.progress.advanced(len(batch) - bad, bad)
                    now = time.monotonic()
                    slow = journal is None and now - last_result >= SLOW_BATCH_SECONDS
                    last_result = now
                    if slow or len(rows) >= SOURCE_COMMIT_ROWS or now - last >= FAST_COMMIT_SECONDS:
                        flush()
            finally:
                flush()  # on success, error or Ctrl-C: keep every finished batch
                if journal is not None:
                    journal.close()
            interrupt.raise_if_requested()  # the step stopped early: it is not complete

    def _recover(self, journal: Journal, folder: StepFolder, state: StepState) -> set[str]:
        """Commit what a killed run kept in the journal; returns the ids it holds (not to redo)."""
        kept = journal.recover(state.done)
        rows, done, failed = kept["rows"], kept["done"], kept["failed"]
        if not (rows or done or failed):
            journal.clear()
            return set()
        _commit_in_order(folder, state, rows, kept.get("positions") or [], done, failed, kept.get("dropped") or [])
        journal.clear()
        log.info("%s: kept %d results from the interrupted run", folder.name, len(done) + len(failed))
        return set(done) | {f["id"] for f in failed}

    # -- reading --------------------------------------------------------------------------------
    def last_rows(self) -> Iterator[dict]:
        """Stream the rows of the last step run so far."""
        if self._last is None:
            return iter(())
        folder, state, _ = self._last
        return folder.iter_rows(state)

    def mark_complete(self) -> None:
        """Record that every step of the pipeline ran to the end (``complete`` in the manifest)."""
        self._manifest["complete"] = True
        self._write_manifest()

    def retire_later_steps(self) -> None:
        """Move step folders beyond the last step run (a pipeline that got shorter) to .stale/."""
        self.run.retire_from(len(self._steps))

    def write_pipeline_yaml(self, text: str) -> None:
        write_atomic(self.run.path / "pipeline.yaml", text)


def write_summary(run_dir: Path, results: list[StepResult]) -> None:
    write_json(Path(run_dir) / "summary.json", [r.as_dict() for r in results])
