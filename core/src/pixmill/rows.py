"""Row helpers shared by operators: field access, prompts, image lists, ids and seeds.

A row is a plain dict. The runner gives every row a stable string ``id`` when it enters the
pipeline; operators attach outputs by id, never by position.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

ID_KEY = "id"
_MISSING = object()


def get_field(row: Any, path: str, default: Any = None) -> Any:
    """Read a dotted path: ``scores.overall``, ``images.0``, ``conversations.0.content``."""
    value = row
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, (list, tuple)) and (part.isdigit() or part.startswith("-")):
            try:
                value = value[int(part)]
            except (IndexError, ValueError):
                value = _MISSING
        else:
            value = _MISSING
        if value is _MISSING:
            return default
    return value


def set_field(row: dict, path: str, value: Any) -> None:
    """Write a dotted path, creating nested dicts as needed."""
    parts = path.split(".")
    target = row
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[parts[-1]] = value


def prompt_texts(value: Any) -> list[str]:
    """The prompts a field holds, in order.

    Accepts a string, a list of strings, or a DataFlow-MM ``conversations`` list
    (``[{"role": "user", "content": "..."}]``: every user turn is one prompt; ``content`` may
    itself be a list of OpenAI-style parts, whose text parts are joined).
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = [value]
    prompts: list[str] = []
    for item in value:
        if isinstance(item, str):
            prompts.append(item)
        elif isinstance(item, dict):
            if item.get("role", "user") not in ("user", "human"):
                continue
            content = item.get("content", item.get("value", ""))
            if isinstance(content, list):
                content = " ".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            prompts.append(str(content))
        else:
            raise ValueError(f"cannot read a prompt from {type(item).__name__}")
    return prompts


def prompt_text(value: Any) -> str:
    """One prompt from a field (several user turns are joined with a newline)."""
    return "\n".join(prompt_texts(value))


def image_list(value: Any) -> list[str]:
    """The image paths a field holds: one path or a list of paths (``None`` and ``""`` mean none)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, dict) and "path" in item:  # {"path": ..., "bytes": ...} image structs
                item = item["path"]
            if not isinstance(item, str):
                raise ValueError(f"an image must be a path string, got {type(item).__name__}")
            if item:  # DataFlow-MM inputs hold "" placeholders for images still to be made
                out.append(item)
        return out
    if isinstance(value, dict) and "path" in value:
        return [value["path"]]
    raise ValueError(f"an image field must be a path or a list of paths, got {type(value).__name__}")


def derive_seed(run_seed: int, row_id: str, index: int = 0) -> int:
    """A per-image seed from the run seed, the row id and the image index.

    Same inputs give the same seed on every machine; different rows never share noise.
    The result fits in 31 bits so that every API that takes a seed accepts it.
    """
    digest = hashlib.sha256(f"{run_seed}\x00{row_id}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)


def child_id(parent_id: str, index: int) -> str:
    """The id of the ``index``-th row that an expanding operator makes from ``parent_id``."""
    return f"{parent_id}/{index}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(row_id: str) -> str:
    """A file-name-safe stem for a row id that cannot collide with another id's stem."""
    safe = _UNSAFE.sub("_", row_id)[:80]
    if safe == row_id:
        return safe
    return f"{safe}-{hashlib.sha1(row_id.encode()).hexdigest()[:8]}"
