"""The field rule: which row field holds the prompt, the source images and the output images.

One rule, shared by every operator, the gallery and the export, so that rows in the DataFlow-MM
formats run with no key options and a generate -> edit -> judge chain works with defaults:

- **prompt** (text-to-image): ``prompt``, else ``conversations`` (the DataFlow-MM form: every user
  turn is one prompt).
- **instruction** (editing): ``instruction``, else ``edit_instruction``, else ``conversations``,
  else ``prompt``.
- **source images** (what an edit starts from): ``images``.
- **generated images** (what text-to-image writes): ``images``, a list, as DataFlow-MM does.
- **edited images** (what an edit writes): ``edited_images``, a list.
- **result images** (what judging, captioning, curation, the gallery and export look at): the
  newest images a row holds: ``edited_images``, else ``images``, else ``image``.
- **control images** (what a ControlNet follows: edges, depth...): ``control_image``, one path or
  one per ControlNet; the ``control-image`` operator writes it.
- **reference images** (what an IP-Adapter takes style or subject from): ``reference_images``.
- **provenance** of the images in ``<field>`` lives in ``<field>_meta``.
- **image values**: a path (``.png``, ``.jpg``, ``.jpeg``, ``.webp``), a list of paths, or
  ``{"path": ...}`` structs (:func:`image_paths`); ``""`` is a placeholder for an image still to make.
- **scores** (what the judge writes, the gallery and the export card show): ``scores``, a dict with
  ``overall``, numeric sub-scores and a ``rationale``, or a bare number (:func:`scores_of`).

An operator option set explicitly (``--input-key``, ``--image-key``...) always wins over the rule.
"""

from __future__ import annotations

from typing import Any, Iterable

PROMPT_FIELDS = ("prompt", "conversations")
INSTRUCTION_FIELDS = ("instruction", "edit_instruction", "conversations", "prompt")
SOURCE_IMAGES = "images"
GENERATED_IMAGES = "images"
EDITED_IMAGES = "edited_images"
CONTROL_IMAGE = "control_image"
REFERENCE_IMAGES = "reference_images"
RESULT_IMAGE_FIELDS = ("edited_images", "images", "image")
# Text shown as a row's prompt in the gallery and the export card (edits: the instruction first).
DISPLAY_TEXT_FIELDS = ("instruction", "edit_instruction", "prompt", "conversations", "caption", "text", "question")
META_SUFFIX = "_meta"
SCORES = "scores"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def meta_field(field: str) -> str:
    """The field holding the provenance of the images in ``field``."""
    return field + META_SUFFIX


def has_value(value: Any) -> bool:
    """Whether a field value holds something: not missing, not ``""``, not a list of ``""``
    placeholders (DataFlow-MM inputs hold ``"images": [""]`` for images still to be made)."""
    if value is None or value == "":
        return False
    if isinstance(value, (list, tuple)):
        return any(has_value(v) for v in value)
    return True


def first_present(row: dict, candidates: Iterable[str]) -> str | None:
    """The first of ``candidates`` that ``row`` holds a value in (see :func:`has_value`)."""
    for name in candidates:
        if has_value(row.get(name)):
            return name
    return None


def result_image_field(row: dict) -> str | None:
    """The field holding a row's newest images (``edited_images``, else ``images``, else ``image``)."""
    return first_present(row, RESULT_IMAGE_FIELDS)


def image_paths(value: Any) -> list[str] | None:
    """The image paths ``value`` holds, if it looks like an image field's value, else None.

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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def scores_of(row: dict, key: str = SCORES) -> tuple[float | None, dict[str, float], str]:
    """(overall, numeric sub-scores, rationale) of the score field ``key`` (a dict, or a number)."""
    value = row.get(key)
    if not isinstance(value, dict):
        return _number(value), {}, ""
    subs = {k: float(v) for k, v in value.items() if k != "overall" and _number(v) is not None}
    rationale = value.get("rationale")
    return _number(value.get("overall")), subs, rationale if isinstance(rationale, str) else ""
