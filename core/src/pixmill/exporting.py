"""Export a run's result as a dataset folder that training code reads as it is.

- ``hf``: Parquet shards ``data/train-00000-of-0000N.parquet`` whose image columns hold the
  ``{"bytes", "path"}`` struct that Hugging Face ``datasets`` decodes as images (the feature types
  go into the Parquet schema metadata under ``huggingface``), so ``load_dataset("parquet",
  data_files=...)`` and ``load_dataset(DIR)`` give PIL images with no extra code.
- ``jsonl`` / ``parquet``: one data file whose image paths point into ``images/`` beside it, the
  files copied there, so the folder is portable.

Every format gets a dataset card (``README.md``: columns, models, generation parameters, counts,
score distribution) and ``export.json`` (what was exported, from where, when).
The folder is built beside the target and swapped in at the end, so a failed export never leaves
half a dataset, and re-exporting replaces a previous export in place.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from . import __version__
from .errors import ConfigError, PixmillError
from .fields import image_paths, scores_of
from .plugins import get_registry

if TYPE_CHECKING:  # the run reader loads with an export, not with `pixmill --help`
    from .run import Run, RunStep

log = logging.getLogger("pixmill.export")

FORMATS = ("hf", "jsonl", "parquet")
DEFAULT_MAX_SHARD_BYTES = 500 * 1000**2  # the size Hugging Face uses for its own shards
EXPORT_INFO = "export.json"
IMAGE_FEATURE = {"_type": "Image"}


@dataclass
class ExportResult:
    """What :func:`export_dataset` wrote."""

    path: Path
    format: str
    rows: int
    files: list[Path]
    images: int
    missing: list[tuple[str, str]] = field(default_factory=list)  # (row id, path) of images not found
    image_columns: dict[str, bool] = field(default_factory=dict)
    # (row id, path, reason) of files refused: outside the allowed folders, or not images
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    partial: str | None = None  # what was exported instead of a finished run's result, if so


@dataclass
class _Scan:
    """One pass over the rows: count, key order, value types, scores (for the card)."""

    rows: int = 0
    keys: dict[str, None] = field(default_factory=dict)
    types: dict[str, Counter] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    subscores: dict[str, list[float]] = field(default_factory=dict)
    models: Counter = field(default_factory=Counter)

    def feed(self, rows: Iterable[dict], score_key: str) -> Iterator[dict]:
        for row in rows:
            self.rows += 1
            for key, value in row.items():
                self.keys.setdefault(key)
                self.types.setdefault(key, Counter())[_type_name(value)] += 1
                _collect_models(key, value, self.models)
            overall, subs, _ = scores_of(row, score_key)
            if overall is not None:
                self.scores.append(overall)
            for k, v in subs.items():
                self.subscores.setdefault(k, []).append(v)
            yield row


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "int" if isinstance(value, int) else "float"
    return {str: "string", dict: "struct", list: "list"}.get(type(value), type(value).__name__)


def _collect_models(key: str, value: Any, models: Counter, depth: int = 0) -> None:
    """Count ``model`` entries in provenance dicts (``image_meta``, ``scores.judge``...)."""
    if depth > 2:
        return
    if isinstance(value, list):
        for item in value[:16]:
            _collect_models(key, item, models, depth + 1)
    elif isinstance(value, dict):
        if isinstance(value.get("model"), str):
            models[(key, str(value.get("serving", "")), value["model"])] += 1
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                _collect_models(f"{key}.{k}", v, models, depth + 1)


# -- entry point --------------------------------------------------------------------------------
def export_dataset(run_dir: Path | str, to: Path | str, fmt: str, *, image_keys: Iterable[str] = (),
                   score_key: str = "scores", shard_rows: int | None = None,
                   max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, split: str = "train",
                   allow_roots: Iterable[Path | str] = (), step: str | None = None,
                   partial: bool = False) -> ExportResult:
    """Export the last step's rows of the run in ``run_dir`` as a dataset folder ``to``.

    Image files are read only under the run folder, the input's folder and ``allow_roots`` (see
    :mod:`pixmill.file_roots`); a file elsewhere, or one that is not an image, is exported as null
    and listed in :attr:`ExportResult.refused`.

    A run that did not finish is refused (:func:`check_exportable`) unless ``partial`` is set or a
    finished ``step`` is named; the card and ``export.json`` then say what was exported."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    check_split_name(split)
    to = Path(to)
    _check_target(to)
    registry = get_registry()
    store_name = "jsonl" if fmt == "jsonl" else "parquet"
    if store_name not in registry.names("stores"):
        raise ConfigError(f"export format {fmt} writes Parquet, and no installed plugin provides a parquet store",
                          "pip install pixmill-parquet")
    store = registry.get_store(store_name)()
    from .run import Run

    run = Run(run_dir, allow_roots=allow_roots)
    last = run.step(-1 if step is None else step)
    status = check_exportable(run, last, step, partial)
    scan = _Scan()
    columns = run.image_columns(scan.feed(last.rows(), score_key), image_keys)
    if scan.rows == 0:
        raise PixmillError(f"run {run.path}: its last step ({last.name}) has no rows to export",
                           "check `pixmill status RUN`: rows may all have failed or been filtered out")
    remove_stale_temps(to)
    stage = to.with_name(f".{to.name}.{os.getpid()}.tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        images = _ImageFiles(run, stage)
        rows = (images.rewrite(row, columns, scan.keys, embed=fmt == "hf") for row in last.rows())
        if fmt == "hf":
            files = _write_shards(store, stage / "data", split, rows, columns, shard_rows, max_shard_bytes)
        else:
            files = [stage / f"{split}{store.suffix}"]
            store.write_file(files[0], rows)
        data_glob = "data/*.parquet" if fmt == "hf" else files[0].name
        (stage / "README.md").write_text(
            dataset_card(run, last, scan, columns, fmt=fmt, split=split, data_glob=data_glob, score_key=score_key,
                         images=images.count, missing=len(images.missing), refused=len(images.refused),
                         status=status), encoding="utf-8")
        if (run.path / "pipeline.yaml").is_file():
            shutil.copyfile(run.path / "pipeline.yaml", stage / "pipeline.yaml")
        info = {"pixmill": __version__, "format": fmt, "run": str(run.path.resolve()), "rows": scan.rows,
                "images": images.count, "missing_images": len(images.missing),
                "refused_images": len(images.refused), "image_columns": columns,
                "step": last.name, "partial": status is not None, "incomplete": status,
                "files": [f.relative_to(stage).as_posix() for f in files],
                "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (stage / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        _swap_in(stage, to)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    for rid, path in images.missing[:20]:
        log.warning("row %s: image %s not found; exported as null", rid, path)
    for rid, _path, reason in images.refused[:20]:
        log.warning("row %s: %s; exported as null", rid, reason)
    return ExportResult(to, fmt, scan.rows, [to / f.relative_to(stage) for f in files], images.count,
                        images.missing, columns, images.refused, status)


def check_exportable(run: Run, last: RunStep, step: str | None, partial: bool) -> str | None:
    """Refuse to present a run that did not finish as a dataset (``last``: the step exported,
    ``step``: the name the user gave it, if any). Returns None for a finished run, else the note
    (for the card and ``export.json``) saying what is exported instead."""
    if run.incomplete is None:
        return None
    if step is not None and last.complete:
        return f"step {last.name} of a run that did not finish ({run.incomplete})"
    if not partial:
        raise PixmillError(f"run {run.path} did not finish: {run.incomplete}",
                           "rerun the same `pixmill run` command to finish it, or pass --partial (or --step "
                           "NAME for a finished step) to export what is there, marked as partial")
    return f"partial: {run.incomplete}; these are the rows step {last.name} had committed"


_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_split_name(split: str) -> str:
    """A split name becomes part of file names: letters, digits, ``_`` and ``-`` only, so it can
    never point outside the export folder (``../x``, ``/etc/x``)."""
    if not _SPLIT_NAME.fullmatch(split or ""):
        raise ConfigError(f"split name {split!r} is not valid",
                          "use letters, digits, '_' or '-' (e.g. train, test, validation)")
    return split


def _check_target(to: Path) -> None:
    """The target must be new, empty, or a previous export (which is replaced)."""
    if to.exists() and not to.is_dir():
        raise ConfigError(f"cannot export to {to}: it is a file",
                          "pass a folder to --to (or a .jsonl/.parquet file without --format)")
    if to.is_dir() and any(to.iterdir()) and not (to / EXPORT_INFO).is_file():
        raise ConfigError(f"cannot export to {to}: the folder is not empty and holds no previous export",
                          "choose a new or empty folder")


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete what killed exports to ``target`` left beside it (``.NAME.PID.tmp`` stages and files,
    ``.NAME.PID.old`` folders) when process PID is gone; returns what was removed."""
    removed = []
    if not target.parent.is_dir():
        return removed
    prefix = f".{target.name}."
    for path in target.parent.iterdir():
        rest = path.name[len(prefix):] if path.name.startswith(prefix) else ""
        pid, _, kind = rest.partition(".")
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d leftovers of interrupted exports beside %s", len(removed), target)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _swap_in(stage: Path, to: Path) -> None:
    old = None
    if to.exists():
        old = to.with_name(f".{to.name}.{os.getpid()}.old")
        os.replace(to, old)
    os.replace(stage, to)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- images ---------------------------------------------------------------------------------------
class _ImageFiles:
    """Turns a row's image values into exported ones: paths into ``images/`` (copying each file
    once) or, for ``hf``, ``{"bytes", "path"}`` structs. Missing files become null."""

    def __init__(self, run: Run, stage: Path):
        self.files = run.files
        self.stage = stage
        self.copied: dict[Path, str] = {}
        self.count = 0
        self.missing: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str, str]] = []

    def rewrite(self, row: dict, columns: dict[str, bool], keys: dict[str, None], embed: bool) -> dict:
        # Every row gets every key (None where missing): Parquet then needs no hidden "absent"
        # column, which training code would see as a stray column.
        out = {k: row.get(k) for k in keys}
        for key, is_list in columns.items():
            value = out.get(key)
            paths = image_paths(value)
            if paths is None or not paths:
                out[key] = [] if is_list and embed else (value if not embed else None)
                continue
            converted = [self._one(row, p, embed) for p in paths]
            out[key] = converted if is_list or isinstance(value, list) else converted[0]
        return out

    def _one(self, row: dict, path: str, embed: bool) -> Any:
        found = self.files.find(path)
        if found is None:
            reason = self.files.refused.get(path)
            if reason is not None:
                self.refused.append((str(row.get("id")), path, reason))
            else:
                self.missing.append((str(row.get("id")), path))
            return None
        self.count += 1
        if embed:
            return {"bytes": found.read_bytes(), "path": found.name}
        if found not in self.copied:
            rel = self._dest(found)
            dest = self.stage / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, dest)
            self.copied[found] = rel
        return self.copied[found]

    def _dest(self, found: Path) -> str:
        """``images/<run-relative path>`` for generated files, ``images/input/<path>`` for input
        files: readable, and unique because the sources are."""
        for base, prefix in ((self.files.run_dir, "images/"), (self.files.input_dir, "images/input/")):
            try:
                return prefix + found.relative_to(base).as_posix()
            except ValueError:
                continue
        import hashlib

        return f"images/other/{hashlib.sha1(str(found).encode()).hexdigest()[:12]}-{found.name}"


# -- Hugging Face shards ------------------------------------------------------------------------
def hf_features(columns: dict[str, bool]) -> dict[str, Any]:
    """The ``datasets`` feature types of the image columns (other columns are inferred from Arrow).
    Lists say ``Sequence``: every ``datasets`` version reads it (4.x and later as ``List``)."""
    return {k: {"_type": "Sequence", "feature": IMAGE_FEATURE} if is_list else IMAGE_FEATURE
            for k, is_list in columns.items()}


def _row_bytes(row: dict) -> int:
    size = 512  # the non-image fields, roughly
    for value in row.values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("bytes"), bytes):
                size += len(item["bytes"])
    return size


def _write_shards(store: Any, folder: Path, split: str, rows: Iterator[dict], columns: dict[str, bool],
                  shard_rows: int | None, max_bytes: int) -> list[Path]:
    """Write ``rows`` as shards of at most ``shard_rows`` rows and about ``max_bytes`` each, named
    ``<split>-00000-of-0000N.parquet`` (N is known only at the end: shards are renamed then)."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"huggingface": json.dumps({"info": {"features": hf_features(columns)}})}
    rows = iter(rows)
    written: list[Path] = []
    while (first := next(rows, None)) is not None:
        def shard(first: dict = first) -> Iterator[dict]:
            n, size = 1, _row_bytes(first)
            yield first
            while (shard_rows is None or n < shard_rows) and size < max_bytes:
                row = next(rows, None)
                if row is None:
                    return
                n, size = n + 1, size + _row_bytes(row)
                yield row

        path = folder / f".shard-{len(written):05d}.parquet"
        store.write_file(path, shard(), metadata=metadata)
        written.append(path)
    final = []
    for i, path in enumerate(written):
        target = folder / f"{split}-{i:05d}-of-{len(written):05d}.parquet"
        os.replace(path, target)
        final.append(target)
    return final


# -- dataset card -------------------------------------------------------------------------------
def dataset_card(run: Run, last: RunStep, scan: _Scan, columns: dict[str, bool], *, fmt: str, split: str,
                 data_glob: str, images: int, missing: int, refused: int = 0, status: str | None = None,
                 score_key: str = "scores") -> str:
    """README.md for the exported folder: the Hub's YAML header, then what a user needs to judge
    and reproduce the dataset."""
    import yaml

    name = run.path.resolve().name
    manifest = run.manifest
    header = {"configs": [{"config_name": "default", "data_files": [{"split": split, "path": data_glob}]}],
              "tags": ["pixmill", "synthetic"], "size_categories": [_size_category(scan.rows)]}
    if columns:
        has_input = any(not g for g in _generated_columns(run, last, columns).values())
        header["task_categories"] = ["image-to-image" if has_input else "text-to-image"]
    out = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "", f"# {name}", "",
           f"Synthetic image dataset made with pixmill {manifest.get('pixmill', __version__)}"
           f"{' on ' + str(manifest['created']) if manifest.get('created') else ''}: "
           f"{scan.rows:,} rows, {images:,} images" + (f" ({missing:,} image files were missing and are null)"
                                                       if missing else "")
           + (f" ({refused:,} files were refused, outside the run's folders or not images, and are null)"
              if refused else "") + "."]
    if status is not None:
        out += ["", f"**Not the pipeline's finished result.** Exported {status}."]
    out += ["", "## Loading", "", "```python",
           "from datasets import load_dataset", ""]
    if fmt == "hf":
        out += [f'ds = load_dataset("parquet", data_files="{data_glob}")["{split}"]  # or load_dataset("path/to/this/folder")']
        if columns:
            out += [f'ds[0]["{next(iter(columns))}"]  # a PIL image']
    else:
        kind = "json" if fmt == "jsonl" else "parquet"
        out += [f'ds = load_dataset("{kind}", data_files="{data_glob}")["{split}"]',
                "# image fields hold paths relative to this folder"]
    out += ["```", "", "## Columns", "", "| column | type | values |", "| --- | --- | --- |"]
    for key in scan.keys:
        out.append(f"| `{key}` | {_column_type(key, scan, columns, fmt)} | {_column_note(key, scan)} |")
    out += ["", "## Models", ""]
    models = _step_models(manifest)
    if models:
        out += ["| step | serving | model |", "| --- | --- | --- |"] + [f"| {s} | {sv} | {m} |" for s, sv, m in models]
    if scan.models:
        out += [""] * bool(models) + ["Recorded in the rows' provenance:", "", "| field | serving | model | rows |",
                                      "| --- | --- | --- | --- |"]
        out += [f"| `{k}` | {sv} | {m} | {n:,} |" for (k, sv, m), n in scan.models.most_common()]
    if not models and not scan.models:
        out.append("No model steps (a model-free pipeline).")
    out += ["", "## Generation parameters", "", "The pipeline, step by step (`pipeline.yaml` in this folder reruns it"
            " with `pixmill run pipeline.yaml`):", "", "```yaml",
            yaml.safe_dump([_step_params(s) for s in manifest.get("steps", [])], sort_keys=False,
                           allow_unicode=True).rstrip(), "```", "", f"Run seed: {manifest.get('seed', 0)}.", "",
            "## Counts", "", "| step | done | failed | filtered out | output rows | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in run.summaries(last):
        out.append(f"| {s.folder} | {s.done:,} | {s.failed:,} | {s.filtered:,} | {s.rows:,} | "
                   f"{'' if s.seconds is None else f'{s.seconds:.1f}'} |")
    what = "the last step's output" if last.name == run.steps[-1].name and status is None else \
        f"the output of step {last.name}"
    out += ["", f"Exported: {scan.rows:,} rows ({what}).", "", "## Score distribution", ""]
    out += _score_section(scan, score_key)
    return "\n".join(out) + "\n"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def _generated_columns(run: Run, last: RunStep, columns: dict[str, bool]) -> dict[str, bool]:
    """Per image column: whether its first image was made by the run (else it came with the input)."""
    found: dict[str, bool] = {}
    for row in last.rows():
        for key in columns:
            if key in found:
                continue
            path = next((p for p in run.images(row, key) if p is not None), None)
            if path is not None:
                found[key] = run.files.is_generated(path)
        if len(found) == len(columns):
            break
    return found


def _column_type(key: str, scan: _Scan, columns: dict[str, bool], fmt: str) -> str:
    if key in columns:
        if fmt == "hf":
            return "list of images" if columns[key] else "image"
        return "list of image paths" if columns[key] else "image path"
    kinds = [k for k in scan.types.get(key, Counter()) if k != "null"]
    return " or ".join(sorted(kinds)) or "null"


def _column_note(key: str, scan: _Scan) -> str:
    types = scan.types.get(key, Counter())
    nulls = types.get("null", 0)
    return f"{scan.rows - nulls:,} set" + (f", {nulls:,} null" if nulls else "")


def _step_models(manifest: dict) -> list[tuple[str, str, str]]:
    out = []
    for step in manifest.get("steps", []):
        serving = step.get("serving")
        if isinstance(serving, dict):
            opts = serving.get("options") or {}
            out.append((step.get("folder", ""), str(serving.get("serving", "")), str(opts.get("model") or "")))
    return out


def _step_params(step: dict) -> dict[str, Any]:
    params: dict[str, Any] = {"step": step.get("folder"), "operator": step.get("operator")}
    if step.get("operator") == "input":
        params["source"] = {k: v for k, v in (step.get("source") or {}).items() if k != "sha256"}
        return params
    params["options"] = {k: v for k, v in (step.get("options") or {}).items() if v is not None}
    serving = step.get("serving")
    if isinstance(serving, dict):
        params["serving"] = {"name": serving.get("serving"),
                             **{k: v for k, v in (serving.get("options") or {}).items() if v is not None}}
    return params


def _score_section(scan: _Scan, score_key: str) -> list[str]:
    if not scan.scores:
        return [f"No scores (no `{score_key}.overall` field in the rows)."]
    s = sorted(scan.scores)
    n = len(s)
    median = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    out = [f"`{score_key}.overall` over {n:,} rows: mean {sum(s) / n:.2f}, median {median:.2f}, "
           f"min {s[0]:.2f}, max {s[-1]:.2f}.", "", "| score | rows | |", "| --- | ---: | --- |"]
    bins = Counter(min(9, max(0, int(v))) for v in s)
    top = max(bins.values())
    for b in range(10):
        out.append(f"| {b}–{b + 1} | {bins.get(b, 0):,} | {'█' * round(20 * bins.get(b, 0) / top)} |")
    if scan.subscores:
        out += ["", "Sub-score means: " + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in scan.subscores.items()) + "."]
    return out
