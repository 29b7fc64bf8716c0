"""The on-disk layout of a run, readable by a human with ``ls``::

    runs/demo/
      manifest.json            the pipeline, its steps and their keys (no secrets)
      pipeline.yaml            the same pipeline, runnable again with `pixmill run`
      00-input/                one folder per step, numbered in pipeline order
        step.json              operator, options, key, counts, complete or not
        ledger.jsonl           the commit log: one line per committed part (row ids done / failed)
        part-000001.jsonl      committed rows (or .parquet)
        failed.jsonl           the rows that failed, with their reasons (rewritten at step end)
        skipped.jsonl          (input step) the malformed input lines skipped, with why
        dropped.jsonl          the rows the operator dropped on purpose, with why (duplicates...)
        images/                files the step wrote
      01-template/ ...

The ledger is the single source of truth. A part counts only once its ledger line is written
(part first, then an appended and fsynced ledger line); a torn last ledger line or a part without a
ledger line is what a crash leaves, and both are ignored (the part is deleted on the next run).

Rows keep their upstream order whatever order batches finish in: each ledger line records the
upstream position of every row of its part (``span`` for a contiguous run, else ``pos``), rows are
sorted within a part, and :meth:`StepFolder.iter_rows` merges parts whose positions interleave.
A step's output is therefore in upstream order (children after their parent, in index order) with
any executor, any concurrency and any kill/resume history.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Iterator

from .errors import PixmillError

try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads
from .files import write_atomic, write_records
from .store import Store, fsync_dir

log = logging.getLogger("pixmill.run")

STALE = ".stale"  # retired step folders, found again by key (see RunFolder.step_folder)
LEDGER = "ledger.jsonl"
STEP_INFO = "step.json"
FAILED = "failed.jsonl"
DROPPED = "dropped.jsonl"
SKIPPED = "skipped.jsonl"
MANIFEST = "manifest.json"


def write_json(path: Path, data: Any) -> None:
    """Write a JSON file atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def remove_temp_files(folder: Path) -> int:
    """Delete the ``.NAME.tmp`` files a killed or failed write left anywhere under ``folder``
    (parts, images, thumbnails); returns how many. Only for a folder this process holds the lock of."""
    removed = 0
    for tmp in folder.rglob(".*.tmp"):
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink()
            removed += 1
    return removed


@dataclass
class StepState:
    """What a step has committed, rebuilt from its ledger."""

    parts: list[str] = field(default_factory=list)
    # Per part (same order as ``parts``): (first position, last position, positions or None when
    # the part holds the contiguous run first..last). None for parts of older ledgers.
    order: list[tuple[int, int, list[int] | None] | None] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    failed: dict[str, dict] = field(default_factory=dict)  # id -> {"reason", "row"}
    dropped: dict[str, dict] = field(default_factory=dict)  # id -> {"id", "reason", ...info}
    rows: int = 0  # output rows committed
    commits: int = 0
    done_count: int = 0
    track_ids: bool = True
    part_bytes: dict[str, int] = field(default_factory=dict)  # size of each part when committed


class StepFolder:
    """One step's folder: its committed parts, its ledger, its info file."""

    def __init__(self, path: Path, store: Store):
        self.path = path
        self.store = store

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def info(self) -> dict:
        return read_json(self.path / STEP_INFO) or {}

    def write_info(self, info: dict) -> None:
        write_json(self.path / STEP_INFO, info)

    def load_state(self, clean: bool = False, with_ids: bool = True) -> StepState:
        """Replay the ledger. With ``clean``, delete what a crash left (uncommitted parts, temp files).
        Without ``with_ids`` the done-id set stays empty (a cached step needs only counts and parts)."""
        state = StepState(track_ids=with_ids)
        ledger = self.path / LEDGER
        if ledger.exists():
            with open(ledger, encoding="utf-8") as fh:
                for line in fh:
                    if not line.endswith("\n"):
                        break  # torn last line: the commit never happened
                    try:
                        entry = _loads(line)
                    except ValueError:
                        break
                    self._apply(state, entry)
            if clean:
                self._truncate_torn(ledger)
                damaged = self.damaged_parts(state)
                if damaged:
                    self._drop_parts(damaged, ledger)
                    return self.load_state(clean=True, with_ids=with_ids)
        if clean:
            committed = set(state.parts)
            for p in self.path.iterdir():
                if p.name.startswith("part-") and p.name not in committed:
                    p.unlink()
            remove_temp_files(self.path)
        return state

    def damaged_parts(self, state: StepState) -> dict[str, str]:
        """Committed parts that are missing or no longer their committed size (a disk fault, a
        truncating copy), each with what is wrong. One ``stat`` per part: cheap on every run."""
        damaged = {}
        for part in state.parts:
            try:
                size = (self.path / part).stat().st_size
            except FileNotFoundError:
                damaged[part] = "missing"
                continue
            expected = state.part_bytes.get(part)
            if expected is not None and size != expected:
                damaged[part] = f"{size:,} bytes instead of the {expected:,} committed"
        return damaged

    def _drop_parts(self, damaged: dict[str, str], ledger: Path) -> None:
        """Repair: forget the commits of damaged parts (their rows are redone) and delete them."""
        kept = []
        for line in ledger.read_text(encoding="utf-8").splitlines(keepends=True):
            if _loads(line).get("part") not in damaged:
                kept.append(line)
        write_atomic(ledger, "".join(kept))
        for part, why in damaged.items():
            (self.path / part).unlink(missing_ok=True)
            log.warning("%s/%s is damaged (%s): its rows are recomputed", self.name, part, why)

    @staticmethod
    def _apply(state: StepState, entry: dict) -> None:
        if entry.get("part"):
            state.parts.append(entry["part"])
            state.order.append(_order_of(entry))
            if "bytes" in entry:
                state.part_bytes[entry["part"]] = int(entry["bytes"])
        state.rows += int(entry.get("rows", 0))
        state.commits += 1
        done = entry.get("done", ())
        if state.track_ids:
            state.done.update(done)
        if state.failed:
            for rid in done:
                state.failed.pop(rid, None)
        for fail in entry.get("failed", ()):
            state.failed[fail["id"]] = fail
        for drop in entry.get("dropped", ()):
            state.dropped[drop["id"]] = drop
        # Each input id is committed as done once (done ids are never offered again).
        state.done_count += len(done)

    @staticmethod
    def _truncate_torn(ledger: Path) -> None:
        data = ledger.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(ledger, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
                os.fsync(fh.fileno())

    def reset(self) -> StepState:
        """Forget everything committed (the input copy restarts from scratch after a crash)."""
        for p in self.path.glob("part-*"):
            p.unlink()
        (self.path / LEDGER).unlink(missing_ok=True)
        return StepState()

    def next_part_name(self, state: StepState) -> str:
        return f"part-{state.commits + 1:06d}{self.store.suffix}"

    def commit(self, state: StepState, rows: list[dict], done: list[str], failed: list[dict],
               positions: list[int] | None = None, dropped: list[dict] = ()) -> None:  # type: ignore[assignment]
        """Atomically commit a batch of results: part file first, then its ledger line (which also
        records the rows dropped on purpose, with their reasons).

        ``positions`` gives each row's upstream position (rows must be sorted by it; see the module
        docstring); without it the rows follow everything committed before them.
        """
        part = None
        entry: dict[str, Any] = {}
        if rows:
            part = self.next_part_name(state)
            self.store.write_part(self.path / part, rows)
            if positions is None:
                last = max((o[1] for o in state.order if o), default=-1)
                positions = range(last + 1, last + 1 + len(rows))  # type: ignore[assignment]
            entry = _encode_order(positions)
            entry["bytes"] = (self.path / part).stat().st_size  # lets every later run spot a damaged part
        entry = {"part": part, "rows": len(rows), **entry, "done": done, "failed": failed,
                 "time": round(time.time(), 3)}
        if dropped:
            entry["dropped"] = list(dropped)
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        with open(self.path / LEDGER, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._apply(state, entry)

    def iter_rows(self, state: StepState | None = None) -> Iterator[dict]:
        """Stream the committed rows in upstream order (see the module docstring).

        Parts whose positions do not interleave (every sequential step, and most of a concurrent
        one) are read one after another; only interleaving parts are merged, a few at a time.
        """
        state = state or self.load_state()
        part = ""
        try:  # one generator level per row: this is the hot path of every model-free step
            for group in _interleaving_groups(state):
                if len(group) == 1:
                    part = state.parts[group[0]]
                    yield from self.store.read_part(self.path / part)
                    continue
                part = ", ".join(state.parts[i] for i in group)
                streams = [self._positioned(state.parts[i], state.order[i], k) for k, i in enumerate(group)]
                for *_key, row in heapq.merge(*streams):
                    yield row
        except (PixmillError, OSError, ValueError) as exc:
            # A committed part is pixmill's own file: no input option fixes it, a rerun does.
            detail = (exc.message if isinstance(exc, PixmillError) else str(exc)).split("\n")[0][:300]
            raise PixmillError(
                f"{self.path / part}: this committed part of step {self.name} is damaged ({detail})",
                "rerun the same `pixmill run` command: the damaged part's rows are recomputed") from None

    def _positioned(self, part: str, order: tuple[int, int, list[int] | None] | None, rank: int) -> Iterator[tuple]:
        first, _last, positions = order or (0, 0, None)
        pos_iter = iter(positions) if positions is not None else count(first)
        tie = count()  # keeps rows of one position (an expanding operator's children) in part order
        for row in self.store.read_part(self.path / part):
            yield next(pos_iter), rank, next(tie), row

    def write_failed(self, state: StepState) -> None:
        """``failed.jsonl``: the failed rows with their reasons."""
        self._write_report(FAILED, state.failed)

    def write_dropped(self, state: StepState) -> None:
        """``dropped.jsonl``: one line per row dropped on purpose (id, reason, info)."""
        self._write_report(DROPPED, state.dropped)

    def write_skipped(self, records: list[dict]) -> None:
        """``skipped.jsonl`` (input step): the malformed input lines, each with its error."""
        self._write_report(SKIPPED, {str(i): r for i, r in enumerate(records)})

    def _write_report(self, name: str, records: dict[str, dict]) -> None:
        path = self.path / name
        if not records:
            path.unlink(missing_ok=True)
            return
        write_records(path, records.values())


def _encode_order(positions: Any) -> dict[str, Any]:
    """A ledger entry's record of its rows' positions: a contiguous run as ``span: [first, n]``."""
    positions = list(positions)
    first = positions[0]
    if positions[-1] - first == len(positions) - 1 and positions == list(range(first, first + len(positions))):
        return {"span": [first, len(positions)]}
    return {"pos": positions}


def _order_of(entry: dict) -> tuple[int, int, list[int] | None] | None:
    if "span" in entry:
        first, n = entry["span"]
        return first, first + n - 1, None
    if "pos" in entry and entry["pos"]:
        positions = entry["pos"]
        return positions[0], positions[-1], positions
    return None


def _interleaving_groups(state: StepState) -> list[list[int]]:
    """Indexes of ``state.parts`` in upstream order, grouped so that parts in different groups do
    not interleave: each group can be read alone, and a group of several must be merged."""
    if not state.parts:
        return []
    orders = state.order
    if any(o is None for o in orders):  # a ledger from before positions were recorded
        return [[i] for i in range(len(state.parts))]
    ranked = sorted(range(len(orders)), key=lambda i: (orders[i][0], i))  # type: ignore[index]
    groups: list[list[int]] = []
    high = None
    for i in ranked:
        first, last, _ = orders[i]  # type: ignore[misc]
        if high is not None and first <= high:
            groups[-1].append(i)
            high = max(high, last)
        else:
            groups.append([i])
            high = last
    return groups


class RunFolder:
    """A run's folder: steps, manifest and an exclusive lock while a process runs it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fh: Any = None

    def is_run(self) -> bool:
        """Whether the folder holds a pixmill run: its lock file (made before anything else) or a
        manifest written by pixmill."""
        return (self.path / ".lock").is_file() or "pixmill" in self.manifest

    def check_is_run_or_empty(self) -> None:
        """Refuse a non-empty folder that is not a run: running into it would overwrite its
        manifest.json or pipeline.yaml and move its NN-* folders away."""
        if self.path.is_dir() and not self.is_run() and any(self.path.iterdir()):
            raise PixmillError(f"--out {self.path} is a folder with other files in it, not a pixmill run",
                               "choose a new or empty folder for the run")
        if self.path.exists() and not self.path.is_dir():
            raise PixmillError(f"--out {self.path} is a file", "choose a new or empty folder for the run")

    def lock(self) -> None:
        self.check_is_run_or_empty()
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise PixmillError(f"run folder {self.path} is in use by another pixmill process",
                               "wait for it to finish, or use another --out") from None
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    @property
    def manifest(self) -> dict:
        return read_json(self.path / MANIFEST) or {}

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.path / MANIFEST, manifest)

    def step_folder(self, index: int, name: str, key: str, store: Store) -> StepFolder:
        """The folder of step ``index`` for the step whose key is ``key``.

        The cache is content-addressed: a folder whose key differs is retired to ``.stale/``, and a
        retired folder with this key (a chain the user ran before, finished or not) is brought back,
        so going back to an earlier pipeline costs nothing for the steps it already made.
        """
        folder = self.path / f"{index:02d}-{name}"
        existing = read_json(folder / STEP_INFO) if folder.exists() else None
        if folder.exists() and (existing is None or existing.get("key") != key):
            self.retire(folder)
        for other in self.path.glob(f"{index:02d}-*"):  # the same index under another operator name
            if other != folder and other.is_dir():
                self.retire(other)
        if not folder.exists():
            found = self.find_retired(key)
            if found is not None:
                os.replace(found, folder)
        folder.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.path)
        return StepFolder(folder, store)

    def retired(self) -> list[Path]:
        """The retired step folders, newest first."""
        stale = self.path / STALE
        if not stale.is_dir():
            return []
        return sorted((p for p in stale.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)

    def find_retired(self, key: str) -> Path | None:
        """The newest retired folder of the step whose key is ``key``, if any."""
        for path in sorted((self.path / STALE).glob(f"*-{key[:8]}-*"), reverse=True):
            if (read_json(path / STEP_INFO) or {}).get("key") == key:
                return path
        return None

    def retire(self, folder: Path) -> None:
        """Move a step folder that no longer belongs to the pipeline to ``.stale/`` (kept: the same
        step is found there again by its key; ``pixmill gc`` deletes retired folders)."""
        old_key = ((read_json(folder / STEP_INFO) or {}).get("key") or "unknown")[:8]
        stale = self.path / STALE / f"{folder.name}-{old_key}-{time.strftime('%Y%m%d-%H%M%S')}"
        stale.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while stale.exists():
            stale = stale.with_name(f"{stale.name}-{n}")
            n += 1
        shutil.move(str(folder), str(stale))
        os.utime(stale)  # newest first in retired()

    def steps(self, store: Store) -> list[StepFolder]:
        """The step folders of the pipeline the manifest describes, in order (``store`` reads their
        parts: the one the manifest names, see :class:`pixmill.Run`)."""
        manifest = self.manifest
        if not manifest:
            raise PixmillError(f"{self.path} is not a pixmill run folder (no {MANIFEST})",
                               "pass the --out folder of a `pixmill run`")
        return [StepFolder(self.path / s["folder"], store) for s in manifest.get("steps", [])]

    def step_info(self, index: int, name: str) -> dict:
        """The ``step.json`` of step ``index`` as it stands (empty when there is none)."""
        return read_json(self.path / f"{index:02d}-{name}" / STEP_INFO) or {}

    def step_dirs(self) -> list[Path]:
        """The numbered step folders on disk (``00-input``, ``01-...``), whatever the manifest says."""
        return sorted(p for p in self.path.glob("[0-9][0-9]-*") if p.is_dir())

    def retire_from(self, index: int) -> None:
        """Retire every step folder numbered ``index`` or more (a pipeline that got shorter)."""
        for path in self.step_dirs():
            if int(path.name[:2]) >= index:
                self.retire(path)
