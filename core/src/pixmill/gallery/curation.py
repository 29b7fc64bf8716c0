"""The curation figures and flags a gallery card shows and filters by.

Curation operators write their figures into rows (``image-stats``, ``detect-nsfw``,
``clip-score``, ``aesthetic-score``, ``dedupe-images``, ``check-prompts``, the diffusers safety
checker). The gallery shows each as a chip, lets the user filter and sort by a figure's range, and
finds flags with the search box. A field holding a list (one value per image) counts by its worst
image: the highest NSFW score, the lowest of the other figures.
"""

from __future__ import annotations

from typing import Any, Callable

# (label shown, field path, how a list of per-image values becomes one figure)
FIGURES: tuple[tuple[str, str, Callable[[list[float]], float]], ...] = (
    ("nsfw", "nsfw.score", max),
    ("clip", "clip_score", min),
    ("aesthetic", "aesthetic", min),
    ("blur", "image_stats.blur", min),
    ("brightness", "image_stats.brightness", min),
    ("contrast", "image_stats.contrast", min),
    ("width", "image_stats.width", min),
    ("height", "image_stats.height", min),
    ("dup distance", "duplicate_distance", min),
)
FIGURE_LABELS = tuple(label for label, _, _ in FIGURES)


def _values(value: Any, path: list[str]) -> list[Any]:
    """Every value at ``path`` under ``value``, stepping into lists (one entry per image)."""
    if isinstance(value, list):
        return [v for item in value for v in _values(item, path)]
    if not path:
        return [value]
    if isinstance(value, dict) and path[0] in value:
        return _values(value[path[0]], path[1:])
    return []


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def curation_of(row: dict) -> tuple[dict[str, float], list[str]]:
    """(figures by label, flags as short texts) of one row; empty when it holds none."""
    figures: dict[str, float] = {}
    for label, path, worst in FIGURES:
        top, *rest = path.split(".")
        numbers = [float(v) for v in _values(row.get(top), rest) if _number(v)]
        if numbers:
            figures[label] = round(worst(numbers), 3)
    flags: list[str] = []
    if row.get("duplicate_of") is not None:
        flags.append(f"duplicate of {row['duplicate_of']}")
    if any(v is True for v in _values(row.get("image_stats"), ["blank"])):
        flags.append("blank image")
    check = row.get("prompt_check")
    if isinstance(check, dict) and check.get("flagged"):
        flags.append("prompt flagged: " + ", ".join(map(str, check.get("categories") or ())))
    for key, value in row.items():
        if key.endswith("_meta") and any(v is True for v in _values(value, ["nsfw_detected"])):
            flags.append("safety checker: nsfw")
            break
    return figures, flags
