"""The pixel figures of ``image-stats`` (brightness, contrast, blur, near-blank), computed from one
8-bit grayscale decode of the image: with OpenCV when it is importable (the figures cost ~10x less,
and a PNG decodes faster, fastest through libspng when ``pyspng`` is importable too), with PIL
alone otherwise. Both give the same numbers to the last bit (a test checks it); neither OpenCV nor
pyspng is a dependency of the core (both come with pixmill-safety).

What is computed, exactly:

- **gray**: ITU-R BT.601 luma with 15-bit integer weights, ``(9798 R + 19235 G + 3735 B + 16384)
  >> 15`` (:data:`LUMA_WEIGHTS`, what OpenCV's ``cvtColor`` computes); alpha is ignored; a grayscale
  file is used as it is; a JPEG decodes straight to its own luma channel (Y), as PIL's ``draft``
  gives it, at a reduced scale when the image is more than twice ``max_side``.
- images larger than ``max_side`` are box-reduced by an integer factor (PIL's ``reduce``) first.
- **brightness** and **contrast**: mean and population standard deviation of the gray values.
- **blur**: variance of the 3x3 Laplacian ``(0 1 0 / 1 -4 1 / 0 1 0)`` of gray over the image
  less its one-pixel border, each value clipped to -128..127 (so a hard black/white edge counts as
  127; the figure tops out near 16,000, far above the ~100 that separates soft from sharp).

Means and variances come from exact integer sums (count, sum, sum of squares) through one formula,
so the two ways of getting the sums cannot disagree.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any

LUMA_WEIGHTS = (9798, 19235, 3735)  # R, G, B; they sum to 2**15, so a gray pixel stays the same value
_LUMA_MATRIX = (*(w / 2**15 for w in LUMA_WEIGHTS), 0.0)  # exact in PIL's float32 convert: see gray_pil
_LAPLACIAN = (0, 1, 0, 1, -4, 1, 0, 1, 0)
_OFFSET = 128  # PIL filters 8-bit images into 8 bits: the Laplacian is shifted, and clipped, around 128
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PLAIN_COLOUR_TYPES = (0, 2, 6)  # gray, RGB, RGBA: the PNGs OpenCV and PIL decode to the same values


@functools.cache
def opencv() -> Any:
    """The ``cv2`` module when it is importable and its RGB/BGR-to-gray conversions give exactly
    :data:`LUMA_WEIGHTS` (checked once on 262,144 pixels, pure ramps included: OpenCV 4 and 5
    round differently), else None."""
    try:
        import cv2
        import numpy as np
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    ramp = np.arange(256, dtype=np.uint8)
    for channel in range(3):  # one row per channel with that channel alone going 0..255
        rgb[channel, :256] = 0
        rgb[channel, :256, channel] = ramp
    wide = rgb.astype(np.uint32)
    want = (wide[..., 0] * LUMA_WEIGHTS[0] + wide[..., 1] * LUMA_WEIGHTS[1] + wide[..., 2] * LUMA_WEIGHTS[2]
            + 2**14) >> 15
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    same = (np.array_equal(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), want)
            and np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), want))
    return cv2 if same else None


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of PNG bytes from the IHDR chunk, which PNG requires first; None if not a PNG."""
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 26:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def plain_png(data: bytes) -> bool:
    """Whether encoded bytes are an 8-bit gray, RGB or RGBA PNG (read from the IHDR chunk)."""
    return png_size(data) is not None and data[24] == 8 and data[25] in _PNG_PLAIN_COLOUR_TYPES


def png_decoders() -> tuple[str, ...]:
    """The decoders :func:`gray_fast` may use for a plain PNG, fastest first: libspng through
    ``pyspng`` (about 35% faster than OpenCV's libpng here) when importable, then OpenCV."""
    try:
        import pyspng  # noqa: F401
    except ImportError:
        return ("opencv",)
    return ("spng", "opencv")


def gray_fast(cv2: Any, data: bytes, decoder: str | None = None) -> Any:
    """The gray pixels of a :func:`plain_png` as a 2-D uint8 array, decoded with ``decoder`` (default:
    the first of :func:`png_decoders`) and converted by OpenCV; None where it cannot decode the file
    to 8 bits (the caller then uses PIL, which says what is wrong with it)."""
    import numpy as np

    decoder = decoder or png_decoders()[0]
    try:
        if decoder == "spng":
            import pyspng

            pixels, order = pyspng.load(data), "RGB"
        else:
            pixels, order = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED), "BGR"
    except (RuntimeError, ValueError):  # pyspng raises these on a damaged file
        return None
    if pixels is None or pixels.dtype != np.uint8:
        return None
    if pixels.ndim == 2:
        return pixels
    channels = pixels.shape[2]
    if channels == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY if order == "RGB" else cv2.COLOR_BGR2GRAY)
    if channels == 4:  # RGBA, or a gray/RGB PNG with a transparent colour: the alpha is ignored
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2GRAY if order == "RGB" else cv2.COLOR_BGRA2GRAY)
    return None


def gray_pil(img: Any, max_side: int) -> Any:
    """The gray pixels of a lazily opened PIL image, as a PIL ``L`` image (before any reduce)."""
    from PIL import Image

    if img.format == "JPEG":
        # decodes straight to luma, at a smaller scale when it can (max_side 0: full size)
        img.draft("L", (max_side, max_side) if max_side else None)
    if img.mode == "L":
        img.load()
        return img
    if Image.getmodebase(img.mode) != "RGB" and img.mode not in ("P", "PA"):
        return img.convert("L")  # one band already (1, LA, I;16, F...)
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    # PIL computes a matrix convert in float32 and truncates v + 0.5: with weights of 2**-15 every
    # partial sum is exact, so this is (9798 R + 19235 G + 3735 B + 16384) >> 15 to the bit.
    return rgb.convert("L", _LUMA_MATRIX)


def reduce_factor(width: int, height: int, max_side: int) -> int:
    """The integer box-reduce factor that brings the longer side to about ``max_side`` (1: none)."""
    factor = max(width, height) // max_side if max_side else 0
    return factor if factor > 1 else 1


def figures(count: int, total: int, squares: int, lap: tuple[int, int, int] | None,
            blank_contrast: float) -> dict[str, Any]:
    """The figures from exact integer sums of gray (count, sum, sum of squares) and of the shifted
    Laplacian (None: image too small for one), the same arithmetic as PIL's ``ImageStat``."""
    mean = total / count
    std = math.sqrt(max(0.0, (squares - total**2 / count) / count))
    blur = 0.0
    if lap is not None:
        n, s, s2 = lap
        blur = (s2 - s**2 / n) / n  # the shift by 128 changes no variance
    return {"brightness": round(mean, 3), "contrast": round(std, 3), "blur": round(blur, 3),
            "blank": std < blank_contrast}


def _histogram_sums(histogram: list[int]) -> tuple[int, int, int]:
    return (sum(histogram), sum(v * c for v, c in enumerate(histogram)),
            sum(v * v * c for v, c in enumerate(histogram)))


def figures_pil(gray: Any, blank_contrast: float) -> dict[str, Any]:
    """:func:`figures` of a PIL ``L`` image, with PIL only."""
    from PIL import ImageFilter

    lap = None
    if min(gray.size) >= 3:
        shifted = gray.filter(ImageFilter.Kernel((3, 3), _LAPLACIAN, scale=1, offset=_OFFSET))
        lap = _histogram_sums(shifted.crop((1, 1, gray.width - 1, gray.height - 1)).histogram())
    return figures(*_histogram_sums(gray.histogram()), lap, blank_contrast)


def figures_opencv(cv2: Any, gray: Any, blank_contrast: float) -> dict[str, Any]:
    """:func:`figures` of a 2-D uint8 array, with OpenCV (integer sums, returned as exact doubles)."""

    def sums(pixels: Any) -> tuple[int, int, int]:
        # An 8-bit sum is accumulated in integers: exact. The sum of squares comes back a double a
        # few ulps off (47999999.99999999 for 48,000,000); it is an integer far below 2**50, so
        # rounding gives it exactly.
        return pixels.size, int(cv2.sumElems(pixels)[0]), round(cv2.norm(pixels, cv2.NORM_L2SQR))

    lap = None
    if min(gray.shape) >= 3:
        # ksize=1 is the 3x3 kernel above; an 8-bit result saturates to 0..255 as PIL's filter does
        shifted = cv2.Laplacian(gray, cv2.CV_8U, ksize=1, delta=_OFFSET)
        lap = sums(shifted[1:-1, 1:-1])
    return figures(*sums(gray), lap, blank_contrast)


def pixel_figures(data: bytes, max_side: int, blank_contrast: float,
                  use_opencv: bool | None = None) -> dict[str, Any]:
    """Brightness, contrast, blur and blank of an image from its encoded bytes (raises on a file PIL
    cannot decode). ``use_opencv``: None = when available, False = PIL only, True = OpenCV or an
    error (for tests)."""
    cv2 = opencv() if use_opencv is not False else None
    if use_opencv and cv2 is None:
        raise RuntimeError("OpenCV (cv2) is not importable here, or converts to gray with other weights")
    gray = gray_fast(cv2, data) if cv2 is not None and plain_png(data) else None
    if gray is None:
        from PIL import Image

        pil_gray = gray_pil(Image.open(io.BytesIO(data)), max_side)  # in memory: nothing to close
        factor = reduce_factor(*pil_gray.size, max_side)
        if factor > 1:
            pil_gray = pil_gray.reduce(factor)
        if cv2 is None:
            return figures_pil(pil_gray, blank_contrast)
        import numpy as np

        gray = np.asarray(pil_gray)
    else:
        factor = reduce_factor(gray.shape[1], gray.shape[0], max_side)
        if factor > 1:
            import numpy as np
            from PIL import Image

            gray = np.asarray(Image.fromarray(gray).reduce(factor))
    return figures_opencv(cv2, gray, blank_contrast)


__all__ = ["LUMA_WEIGHTS", "figures", "gray_fast", "gray_pil", "opencv", "pixel_figures", "png_decoders", "png_size"]
