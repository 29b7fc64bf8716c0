"""``image-stats``: cheap, model-free figures about each image (size, bytes, brightness, blur...).

PIL is enough, so it lives in the core. Size and format come from the file header; the pixel
figures (brightness, contrast, blur, near-blank) decode the image once, as 8-bit grayscale, reduced
to at most ``--max-side`` pixels per side first so that huge images cost no more than the figures
need: see :mod:`pixmill.ops.gray_figures` for exactly what is computed (faster with OpenCV when
it is importable, the same numbers without).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from ..context import StepContext
from ..cpu_pool import cores, error_value, map_in_pool
from ..image_files import ImageError, open_row_image, row_image_file, unreadable_image
from ..operator import Dropped
from ..options import Option
from .gray_figures import pixel_figures, png_size
from .per_image import IMAGE_KEY, PROCESS_WORKERS, PerImageOperator


def header_figures(data: bytes) -> dict[str, Any]:
    """The figures known from the encoded bytes and the header alone (raises on a file that is not
    an image). A PNG's size is read from its IHDR chunk; anything else is opened lazily with PIL."""
    size = png_size(data)
    if size is not None:
        width, height, kind = *size, "png"
    else:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            (width, height), kind = img.size, (img.format or "").lower()
    return {"width": width, "height": height, "aspect": round(width / height, 4) if height else None,
            "format": kind, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def measure_file(path: Path, pixels: bool, max_side: int, blank_contrast: float) -> dict[str, Any]:
    """The figures of one image file (raises what reading or decoding it raises)."""
    data = Path(path).read_bytes()
    figures = header_figures(data)
    if pixels:
        figures.update(pixel_figures(data, max_side, blank_contrast))
    return figures


def _measure_job(job: tuple) -> dict[str, Any] | Exception:
    """:func:`measure_file` in a pool worker: an error comes back as a value, so one bad file
    stops nothing and the step reports it as a row's fault or the machine's."""
    try:
        return measure_file(*job)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        return error_value(exc)


class ImageStats(PerImageOperator):
    """Figures about each image of a row, for ``filter --where`` and the gallery.

    Writes ``--output-key`` (default ``image_stats``): ``width``, ``height``, ``aspect``
    (width/height), ``bytes`` (file size), ``format``, ``sha256`` (of the file's bytes: equal files,
    equal hash), and with pixels (the default) ``brightness`` (mean gray, 0-255), ``contrast``
    (gray standard deviation), ``blur`` (variance of the Laplacian; below ~100 looks blurry at
    512 px) and ``blank`` (contrast under ``--blank-contrast``). One dict per image; a list of
    dicts when the row holds several images.
    """

    name = "image-stats"
    description = "size, bytes, format, content hash, brightness, contrast, blur, near-blank flag per image"
    options = (
        IMAGE_KEY,
        Option("output_key", str, "image_stats", "field to write the figures to"),
        Option("pixels", bool, True, "decode pixels for brightness, contrast, blur and blank (false: header "
               "figures and the hash only, much faster)"),
        Option("max_side", int, 1024, "reduce larger images to about this many pixels per side before the "
               "pixel figures (blur depends on scale: keep it fixed across a dataset)"),
        Option("blank_contrast", float, 4.0, "an image whose gray standard deviation is below this is blank"),
        Option("drop_blank", bool, False, "drop near-blank images (recorded in dropped.jsonl with the reason)"),
        PROCESS_WORKERS,
    )
    default_batch_size = 256

    def _settings(self) -> tuple[bool, int, float]:
        return bool(self.config["pixels"]), int(self.config["max_side"] or 0), float(self.config["blank_contrast"])

    def load(self, ctx: StepContext, row: dict, path: str, field: str) -> Any:
        return open_row_image(ctx, path, field, row=row, read=lambda found: measure_file(found, *self._settings()))

    def _load_all(self, ctx: StepContext, jobs: list[tuple[dict, str, str]]) -> list[Any]:
        """With pixels, in the process pool of :mod:`pixmill.cpu_pool` (``--workers 1``: here;
        threads where there is no pool): the PNG decoder, libspng, holds Python's lock while it
        works. The header figures alone are read here, one file after another. Paths are
        checked here (roots rule, existence), the files read and measured in the workers, and their
        errors reported as :func:`pixmill.image_files.open_row_image` reports them."""
        if not self.config["pixels"]:  # mostly Python: a second thread or process costs more than it gives
            return super()._load_all(ctx, jobs, workers=1)
        if self.config.get("workers") == 1 or len(jobs) < 8:
            return super()._load_all(ctx, jobs)
        out: list[Any] = [None] * len(jobs)
        files: list[tuple[int, Path]] = []
        for i, (row, path, field) in enumerate(jobs):
            try:
                files.append((i, row_image_file(ctx, path, field, row=row)))
            except ImageError as exc:
                out[i] = exc
        done = map_in_pool(_measure_job, [(found, *self._settings()) for _, found in files],
                           chunksize=max(1, min(32, len(files) // (4 * cores()))))
        if done is None:
            return super()._load_all(ctx, jobs)
        for (i, _), found in zip(files, done, strict=True):
            if isinstance(found, BaseException):
                row, path, field = jobs[i]
                found = unreadable_image(found, path, field, row=row)  # the machine's errors: raised
            out[i] = found
        return out

    def measure(self, rows: list[dict], items: list[Any]) -> list[Any]:
        return items  # everything was measured while loading: one pass over each file

    def drop_reason(self, row: dict, figure: Any) -> Dropped | None:
        if not self.config["drop_blank"]:
            return None
        figures = figure if isinstance(figure, list) else [figure]
        blank = [i for i, f in enumerate(figures) if f.get("blank")]
        if not blank:
            return None
        return Dropped(f"near-blank image (contrast {figures[blank[0]]['contrast']})", {"blank": True})


IMAGE_STATS_OPERATORS = [ImageStats]
