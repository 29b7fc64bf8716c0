"""``write_gallery``: one self-contained HTML page showing every row of a run.

The page is the template next to this module with the rows embedded as JSON; thumbnails are
JPEG files in ``<name>_files/`` beside the HTML (linked relatively, so the page opens from disk
and travels in a zip with the run) or ``data:`` URIs with ``embed``. Full-size images are
relative links to the originals.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from ..fields import DISPLAY_TEXT_FIELDS, META_SUFFIX, image_paths, scores_of
from ..rows import ID_KEY, prompt_text
from ..run import FAILED, FILTERED, OK, RowStatus, Run
from ..store import atomic_replace, temp_path
from .curation import FIGURE_LABELS, curation_of
from .thumbs import Thumbnailer, ThumbStats

log = logging.getLogger("pixmill.gallery")

DATA_MARK = "__PIXMILL_GALLERY_DATA__"
FIELD_CHARS = 400  # other fields are shown truncated: the page is for looking, the run has the rest


@dataclass
class GalleryResult:
    """What :func:`write_gallery` wrote."""

    path: Path
    rows: int
    counts: dict[str, int]
    thumbs: ThumbStats
    seconds: float
    image_columns: dict[str, bool] = field(default_factory=dict)


def write_gallery(run_dir: Path | str, out: Path | str | None = None, *, embed: bool = False,
                  page_size: int = 100, thumb_size: int = 256, workers: int | None = None,
                  image_keys: Iterable[str] = (), prompt_key: str | None = None, score_key: str = "scores",
                  title: str | None = None, allow_roots: Iterable[Path | str] = ()) -> GalleryResult:
    """Write the gallery of the run in ``run_dir`` to ``out`` (default ``RUN/gallery.html``).
    Image files are shown only under the run folder, the input's folder and ``allow_roots`` (see
    :mod:`pixmill.file_roots`)."""
    started = time.monotonic()
    run = Run(run_dir, allow_roots=allow_roots)
    out = Path(out) if out is not None else run.path / "gallery.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    html_dir = out.parent.resolve()
    filtered: dict[str, int] = {}
    rows = list(run.statuses(filtered=filtered))
    columns = run.image_columns((r.row for r in rows), image_keys)
    sources = [found for r in rows for key in columns for found in run.images(r.row, key) if found is not None]
    files_dir = out.with_name(out.stem + "_files")
    thumbnailer = Thumbnailer(None if embed else files_dir, size=thumb_size, workers=workers, embed=embed)
    thumbs = thumbnailer.make_all(sources)
    thumb_prefix = "" if embed else file_href(files_dir.resolve(), html_dir) + "/"

    def thumb_url(source: Path) -> str | None:
        value = thumbs.get(source)
        return None if value is None else (value if embed else thumb_prefix + quote(value))

    records = [_record(run, r, columns, html_dir, thumb_url, prompt_key, score_key) for r in rows]
    counts = Counter(r.status for r in rows)
    page = {
        "title": title or f"pixmill run {run.path.resolve().name}",
        "run": str(run.path),
        "created": run.manifest.get("created"),
        "incomplete": run.incomplete,
        "pixmill": run.manifest.get("pixmill"),
        "page_size": page_size,
        "score_key": score_key,
        "image_columns": columns,
        "steps": [s.as_dict() for s in run.summaries(filtered=filtered)],
        "counts": {OK: counts[OK], FAILED: counts[FAILED], FILTERED: counts[FILTERED]},
        "rows": records,
        "figures": [label for label in FIGURE_LABELS if any(label in r.get("cu", {}) for r in records)],
    }
    html = _template().replace(DATA_MARK, _script_json(page), 1)
    tmp = temp_path(out)
    tmp.write_text(html, encoding="utf-8")
    atomic_replace(tmp, out)
    seconds = time.monotonic() - started
    log.info("gallery of %d rows written to %s in %.2fs", len(rows), out, seconds)
    return GalleryResult(out, len(rows), dict(page["counts"]), thumbnailer.stats, seconds, columns)


def _record(run: Run, r: RowStatus, columns: dict[str, bool], html_dir: Path, thumb_url,
            prompt_key: str | None, score_key: str) -> dict[str, Any]:
    """One row as the page's JS reads it (short keys: thousands of these are embedded)."""
    row = r.row
    prompt_key, prompt = prompt_of(row, prompt_key)
    overall, subs, rationale = scores_of(row, score_key)
    groups = []
    for key in columns:
        paths = image_paths(row.get(key)) or []
        if not paths:
            continue
        images = []
        generated = False
        for p, found, meta in zip(paths, run.images(row, key), run.provenance(row, key), strict=True):
            if found is None:
                refused = run.files.refused.get(p)
                images.append({"t": None, "f": p, "miss": True, **({"why": refused} if refused else {})})
                continue
            generated = generated or run.files.is_generated(found)
            images.append({"t": thumb_url(found), "f": file_href(found, html_dir), "c": _caption(meta),
                            "m": _meta_text(meta)})
        groups.append({"k": key, "gen": generated, "i": images})
    groups.sort(key=lambda g: g["gen"])  # sources first, then what the run made: side by side
    skip = {ID_KEY, score_key, prompt_key, *columns, *(k + META_SUFFIX for k in columns)}
    extra = {k: _short(v) for k, v in row.items() if k not in skip}
    rec: dict[str, Any] = {"id": str(row.get(ID_KEY, "")), "st": r.status, "step": r.step, "p": prompt,
                           "pk": prompt_key, "g": groups, "s": overall}
    if r.reason:
        rec["why"] = r.reason
    if subs:
        rec["sc"] = subs
    if rationale:
        rec["ra"] = rationale
    if extra:
        rec["x"] = extra
    figures, flags = curation_of(row)
    if figures:
        rec["cu"] = figures
    if flags:
        rec["fl"] = flags
    return rec


def prompt_of(row: dict, prompt_key: str | None = None) -> tuple[str | None, str]:
    """(field, text) of the row's prompt or instruction: ``prompt_key``, else the first of
    :data:`pixmill.fields.DISPLAY_TEXT_FIELDS` the row has."""
    for key in (prompt_key,) if prompt_key else DISPLAY_TEXT_FIELDS:
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


def file_href(target: Path, start: Path) -> str:
    """A link from a page in ``start`` to ``target``: always a relative URL, percent-encoded and
    starting with ``./`` or ``../``, so no file name (``javascript:alert(1).png``,
    ``https:x.png``, ``#x.png``) can turn into a script, another site or an in-page anchor."""
    rel = quote(Path(os.path.relpath(target, start)).as_posix())
    return rel if rel.startswith("../") else "./" + rel


def _caption(meta: dict | None) -> str:
    if not meta:
        return ""
    parts = [str(meta[k]) for k in ("model",) if meta.get(k)]
    parts += [f"{k} {meta[k]}" for k in ("seed", "steps", "guidance") if meta.get(k) is not None]
    return " · ".join(parts)


def _meta_text(meta: dict | None) -> str:
    if not meta:
        return ""
    return "\n".join(f"{k}: {_short(v)}" for k, v in meta.items())


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= FIELD_CHARS else text[:FIELD_CHARS] + "…"


def _script_json(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``</script>`` or ``<!--`` can end or confuse the block."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _template() -> str:
    return resources.files("pixmill.gallery").joinpath("template.html").read_text(encoding="utf-8")
