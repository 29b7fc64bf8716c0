"""The base of curation operators that measure every image of a row (image-stats, detect-nsfw,
clip-score, aesthetic-score...).

Such an operator reads the images of one field (``--image-key``, default: the row's newest images
per :func:`pixmill.fields.result_image_field`), measures them a batch at a time, and writes the
figures to ``--output-key``: one value when the row holds one image (a path, or a list of one), a
list of values, in image order, when it holds several. A row whose image is missing or unreadable
fails alone, with the file and field named; the rest of the batch goes on.
"""

from __future__ import annotations

import os
from typing import Any

from ..context import StepContext
from ..fields import RESULT_IMAGE_FIELDS, has_value, result_image_field
from ..operator import Dropped, Failed, Operator, Outcome
from ..options import Option
from ..rows import ID_KEY, get_field, image_list
from .regroup import per_row

IMAGE_KEY = Option("image_key", str, None, "field with the image(s) to measure (default: the row's newest "
                   "images: edited_images, else images, else image)")
WORKERS = Option("workers", int, None, "threads reading and decoding images (default: CPU count, at most 8)",
                 cache=False)


def row_image_paths(row: dict, key: str | None) -> tuple[str, list[str], bool]:
    """(field, image paths, whether the field holds a list) of a row, or ValueError naming the fix."""
    rid = row.get(ID_KEY, "?")
    field = key or result_image_field(row)
    if field is None:
        fields = ", ".join(k for k in row if k != ID_KEY)
        raise ValueError(f"row {rid}: no image field (fields: {fields}); pass --image-key FIELD")
    value = get_field(row, field)
    if not has_value(value):
        raise ValueError(f"row {rid}: field {field!r} holds no image path (did the step that makes it fail?)")
    try:
        paths = image_list(value)
    except ValueError as exc:
        raise ValueError(f"row {rid}: field {field!r}: {exc}") from None
    return field, paths, isinstance(value, (list, tuple))


def image_fields_read(key: str | None) -> list[tuple[str, ...]]:
    """What an image-reading step needs (for the runner's field check): ``key``, else any of the
    result image fields."""
    return [(key,) if key else RESULT_IMAGE_FIELDS]


class PerImageOperator(Operator):
    """Measures each image of a row; subclasses implement :meth:`load` and :meth:`measure`.

    ``load`` reads one image of a row, through :func:`pixmill.image_files.open_row_image` (whose
    :class:`~pixmill.image_files.ImageError`, a ValueError, fails the row); ``measure`` gets
    every loaded item of the batch with its row and returns one figure (or Exception) per item, so a
    model sees the whole batch at once. :meth:`drop_reason` may drop a measured row on purpose
    (recorded with its reason, see :class:`pixmill.operator.Dropped`).
    """

    default_batch_size = 64

    def fields_read(self) -> list[tuple[str, ...]]:
        return image_fields_read(self.config.get("image_key"))

    def load(self, ctx: StepContext, row: dict, path: str, field: str) -> Any:
        raise NotImplementedError

    def measure(self, rows: list[dict], items: list[Any]) -> list[Any]:
        raise NotImplementedError

    def drop_reason(self, row: dict, figure: Any) -> Dropped | None:
        """A :class:`Dropped` for a row to drop, else None (default: keep every row)."""
        return None

    def _load_all(self, ctx: StepContext, jobs: list[tuple[dict, str, str]]) -> list[Any]:
        """Each (row, path, field) loaded, or the ValueError naming why not; in a thread pool with
        ``--workers`` above 1 (PIL decodes without holding the GIL, so threads use every core)."""

        def one(job: tuple[dict, str, str]) -> Any:
            try:
                return self.load(ctx, *job)
            except ValueError as exc:
                return exc

        workers = self.config.get("workers", 1)
        workers = int(workers if workers is not None else min(8, os.cpu_count() or 1))
        if workers <= 1 or len(jobs) < 2:
            return [one(job) for job in jobs]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(workers, len(jobs))) as pool:
            return list(pool.map(one, jobs))

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        found: list[Any] = []
        jobs: list[tuple[dict, str, str]] = []
        for row in rows:
            try:
                field, paths, as_list = row_image_paths(row, self.config.get("image_key"))
            except ValueError as exc:
                found.append(Failed(str(exc)))
                continue
            found.append((len(paths), as_list and len(paths) > 1))
            jobs += [(row, p, field) for p in paths]
        loaded = self._load_all(ctx, jobs)
        plans: list[Any] = []
        item_rows: list[dict] = []
        items: list[Any] = []
        for row, plan, mine, error in per_row(rows, found, loaded):
            if error is not None:
                plan = Failed(str(error))
            plans.append(plan)
            if not isinstance(plan, Failed):
                items.extend(mine)
                item_rows.extend([row] * len(mine))
        figures = self.measure(item_rows, items) if items else []
        out: list[Outcome] = []
        for row, plan, mine, error in per_row(rows, plans, figures):
            if isinstance(plan, Failed):
                out.append(plan)
                continue
            many = plan[1]
            if error is not None:
                out.append(Failed(f"row {row.get(ID_KEY, '?')}: {error}"))
                continue
            figure = mine if many else mine[0]
            row[self.config["output_key"]] = figure  # rows are fresh copies read for this batch
            out.append(self.drop_reason(row, figure) or row)
        return out
