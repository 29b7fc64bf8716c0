"""Images embedded in input rows, written out as files when the input is copied into the run.

Hugging Face ``datasets`` (and pixmill's own ``hf`` export) store an image as a
``{"bytes": ..., "path": ...}`` struct. Step files hold paths, never bytes, so step 0 writes each
embedded image to ``00-input/images/`` and the row names that file instead: a dataset exported by
pixmill can be the input of another run as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import write_atomic
from .rows import file_stem


def _is_embedded(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)) and set(value) <= {"bytes", "path"}


def has_embedded_images(row: dict) -> bool:
    """Whether any field of ``row`` holds an embedded image (or a list of them)."""
    for value in row.values():
        if _is_embedded(value) or (isinstance(value, list) and value and _is_embedded(value[0])):
            return True
    return False


def write_embedded_images(row: dict, row_id: str, images_dir: Path, run_dir: Path) -> dict:
    """``row`` with every embedded image replaced by the run-relative path of a file holding its
    bytes (named from the row id, field and index, so reruns write the same names)."""
    from .http.media import sniff_image  # (pixmill.http is not needed by runs without such images)

    out = dict(row)
    for key, value in row.items():
        items = value if isinstance(value, list) else [value]
        if not items or not all(_is_embedded(v) or v is None for v in items) or not any(map(_is_embedded, items)):
            continue
        paths: list[str | None] = []
        for index, item in enumerate(items):
            if item is None:
                paths.append(None)
                continue
            data = bytes(item["bytes"])
            sniffed = sniff_image(data)
            suffix = sniffed[0] if sniffed else (Path(str(item.get("path") or "")).suffix or ".bin")
            target = images_dir / f"{file_stem(row_id)}-{file_stem(key)}-{index}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, data)
            paths.append(target.relative_to(run_dir).as_posix())
        out[key] = paths if isinstance(value, list) else paths[0]
    return out
