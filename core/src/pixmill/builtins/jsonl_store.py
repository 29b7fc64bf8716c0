"""The default store: one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InputError
from ..store import BadLineHandler, Store, atomic_replace, temp_path

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


class JsonlStore(Store):
    """Rows as JSON Lines (``.jsonl``): human-readable, appendable, the DataFlow-MM input format."""

    name = "jsonl"
    suffix = ".jsonl"
    description = "JSON Lines files (default)"

    def write_part(self, path: Path, rows: list[dict]) -> None:
        self.write_file(path, rows)

    def write_file(self, path: Path, rows: Iterable[dict]) -> int:
        tmp = temp_path(path)
        count = 0
        with open(tmp, "w", encoding="utf-8") as fh:
            buf: list[str] = []
            for row in rows:
                buf.append(_dumps(row))
                count += 1
                if len(buf) >= 4096:
                    fh.write("\n".join(buf) + "\n")
                    buf.clear()
            if buf:
                fh.write("\n".join(buf) + "\n")
        atomic_replace(tmp, path)
        return count

    def read_part(self, path: Path, on_bad_line: BadLineHandler | None = None) -> Iterator[dict]:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = _loads(line)
                    if not isinstance(row, dict):
                        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                except ValueError as exc:
                    if on_bad_line is None:
                        raise InputError(
                            f"{path}:{lineno}: malformed JSON line ({str(exc).splitlines()[0]})",
                            "fix the line, or pass --skip-bad-lines to skip and record bad lines",
                        ) from None
                    on_bad_line(lineno, line.rstrip("\n"), str(exc))
                    continue
                yield row
