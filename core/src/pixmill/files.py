"""Writing files so that a crash leaves the old file or the new one, never half of either.

Every file pixmill writes whole (JSON and YAML files, failure and skip records, keys, images) goes
through :func:`write_atomic`: a temporary file beside the target, fsynced, renamed over it, and the
folder fsynced. Leftover temporaries (``.NAME.PID.tmp``) are what a kill leaves; the run folder
cleans them when it next opens a step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from .store import atomic_replace, temp_path


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (text is written as UTF-8)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        atomic_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Records for people (failed rows, skipped lines) as JSON Lines, atomically, whatever the
    run's store: the core's own codec, readable with any text tool."""
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records :func:`write_records` wrote (none when the file is missing)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
