"""A step's journal: results kept the moment they arrive, between the runner's commits.

A model step commits a part file about once a second (a million-row step must not leave a million
part files), but a result that arrived since the last commit must survive a ``kill -9``: it may
have cost a paid API call. Each finished batch is therefore appended to ``journal.jsonl`` in the
step's folder as one line (one ``write``, no fsync: the operating system keeps it if the process
dies; a machine crash loses at most the last second, as without a journal). The next commit makes
the journal's content a part and empties it; a rerun after a kill commits what the journal holds
before asking for anything, so only the requests truly in flight are made again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads

JOURNAL = "journal.jsonl"


class Journal:
    """Append-only record of the results a step has not committed yet."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / JOURNAL
        self._fd: int | None = None

    def append(self, **fields: list) -> None:
        """Keep one batch's results (``rows``, ``done``, ``failed``, and any other list a commit
        takes): one line, one write (a torn last line is ignored on recovery)."""
        if not any(fields.values()):
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = json.dumps(fields, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        os.write(self._fd, line.encode("utf-8"))

    def recover(self, committed: set[str] | None = None) -> dict[str, list]:
        """The journal's results, each field's lists joined in order, less batches whose ``done``
        ids are in ``committed`` (a kill between a commit and :meth:`clear` leaves results that are
        already in the ledger; failures are keyed by id, so committing one twice is harmless)."""
        out: dict[str, list] = {"rows": [], "done": [], "failed": []}
        if not self.path.exists():
            return out
        committed = committed or set()
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break
                try:
                    entry: dict[str, Any] = _loads(line)
                except ValueError:
                    break
                if any(rid in committed for rid in entry.get("done", ())):
                    continue  # a batch is committed whole: one id committed means all are
                for key, values in entry.items():
                    out.setdefault(key, []).extend(values)
        return out

    def clear(self) -> None:
        """Empty the journal (everything in it is committed)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        elif self.path.exists():
            self.path.unlink()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()
