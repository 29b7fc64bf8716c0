"""``image-stats``: cheap, model-free figures about each image (size, bytes, brightness, blur...).

PIL only, so it lives in the core. Size and format come from the file header; the pixel figures
(brightness, contrast, blur, near-blank) decode the image once, as 8-bit grayscale, reduced to at
most ``--max-side`` pixels per side first so that huge images cost no more than the figures need.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from ..context import StepContext
from ..image_files import open_row_image
from ..operator import Dropped
from ..options import Option
from .per_image import IMAGE_KEY, WORKERS, PerImageOperator

# The Laplacian of 8-bit grayscale, shifted by 128 so PIL's 8-bit filter output keeps negative values.
_LAPLACIAN = (0, 1, 0, 1, -4, 1, 0, 1, 0)
_LAPLACIAN_OFFSET = 128


def header_figures(data: bytes) -> tuple[Any, dict[str, Any]]:
    """Open encoded image bytes lazily: (PIL image, figures known from the header alone)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    width, height = img.size
    return img, {"width": width, "height": height, "aspect": round(width / height, 4) if height else None,
                 "format": (img.format or "").lower(), "bytes": len(data),
                 "sha256": hashlib.sha256(data).hexdigest()}


def pixel_figures(img: Any, max_side: int, blank_contrast: float) -> dict[str, Any]:
    """Brightness (mean, 0-255), contrast (standard deviation), blur (variance of the Laplacian:
    low = blurry) and whether the image is near-blank (contrast below ``blank_contrast``)."""
    from PIL import ImageFilter, ImageStat

    if img.format == "JPEG":
        img.draft("L", (max_side, max_side))  # JPEG decodes straight to a smaller size: much faster
    gray = img.convert("L")
    factor = max(gray.size) // max_side if max_side else 0
    if factor > 1:
        gray = gray.reduce(factor)
    stat = ImageStat.Stat(gray)
    mean, std = stat.mean[0], stat.stddev[0]
    if min(gray.size) >= 3:
        lap = gray.filter(ImageFilter.Kernel((3, 3), _LAPLACIAN, scale=1, offset=_LAPLACIAN_OFFSET))
        blur = ImageStat.Stat(lap.crop((1, 1, lap.width - 1, lap.height - 1))).var[0]
    else:
        blur = 0.0
    return {"brightness": round(mean, 3), "contrast": round(std, 3), "blur": round(blur, 3),
            "blank": std < blank_contrast}


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
        WORKERS,
    )
    default_batch_size = 256

    def load(self, ctx: StepContext, row: dict, path: str, field: str) -> Any:
        return open_row_image(ctx, path, field, row=row, read=self._figures)

    def _figures(self, path: Path) -> dict[str, Any]:
        img, figures = header_figures(path.read_bytes())
        if self.config["pixels"]:
            figures.update(pixel_figures(img, int(self.config["max_side"] or 0), float(self.config["blank_contrast"])))
        return figures

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
