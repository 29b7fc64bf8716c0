"""Content and perceptual hashes of image files (sha256 of the bytes; pHash or dHash).

The perceptual hash is 64 bits, kept in rows as 16 hex digits, bit for bit what ``imagehash``'s
``phash`` / ``dhash`` give for the same grayscale image (a test checks it). Large images are
reduced before hashing (JPEG files decode straight to a small size), which changes nothing a 32x32
pHash can see and makes hashing cost about the same for a 256 px and a 4k image.

Hashing is split in two so that a batch pays the numpy work once: :func:`hash_input` decodes one
file down to the few pixels the hash looks at (in a process pool: PIL decodes without the GIL, but
the Python around it would keep a second thread waiting), and :func:`hashes_from_inputs` turns a
whole batch of those into hex strings with a handful of vectorised calls (scipy's DCT over the
batch, one median, one ``packbits``) instead of one ``imagehash`` object per image.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from pixmill.cpu_pool import error_value
from pixmill.ops.gray_figures import png_size

HASH_METHODS = ("phash", "dhash")
_WORK_SIDE = 128  # pHash looks at 32x32; reducing to >= 4x that first loses nothing it uses
_HASH_SIZE = 8  # 8x8 = 64 bits, imagehash's default
_HASH_INPUT = {"phash": (32, 32), "dhash": (9, 8)}  # (width, height) imagehash resizes the gray image to


def work_gray(data: bytes) -> Any:
    """The grayscale PIL image a hash is computed from: decoded, converted to ``L`` and box-reduced
    by an integer factor so its shorter side stays at least 128 pixels."""
    from PIL import Image

    gray = _rgb_png_gray(data)
    if gray is None:
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft("L", (_WORK_SIDE, _WORK_SIDE))
            gray = img.convert("L")
    factor = min(gray.size) // _WORK_SIDE
    return gray.reduce(factor) if factor > 1 else gray


def _rgb_png_gray(data: bytes) -> Any:
    """An 8-bit RGB PNG decoded by libspng (pyspng), ~35% faster than PIL's decoder, then converted
    by PIL exactly as PIL's own decode would be; None for any other file or without pyspng."""
    if png_size(data) is None or data[24] != 8 or data[25] != 2:  # IHDR: bit depth 8, colour type RGB
        return None
    try:
        import pyspng
        from PIL import Image

        pixels = pyspng.load(data)
    except (ImportError, RuntimeError, ValueError):  # no pyspng, or a damaged file: PIL says why
        return None
    if pixels.dtype.itemsize != 1 or pixels.ndim != 3 or pixels.shape[2] != 3:
        return None
    return Image.frombuffer("RGB", (pixels.shape[1], pixels.shape[0]), pixels, "raw", "RGB", 0, 1).convert("L")


def hash_input(data: bytes, method: str = "phash") -> Any:
    """The pixels ``method`` looks at, as a uint8 array: the work gray image resized with Lanczos to
    32x32 (pHash) or 9 wide by 8 high (dHash), exactly as ``imagehash`` resizes it."""
    import numpy as np
    from PIL import Image

    return np.asarray(work_gray(data).resize(_HASH_INPUT[method], Image.Resampling.LANCZOS))


def hashes_from_inputs(inputs: list[Any], method: str = "phash") -> list[str]:
    """The hex hash of each :func:`hash_input` array, computed for the whole batch at once."""
    import numpy as np

    if not inputs:
        return []
    pixels = np.stack(inputs)
    n = _HASH_SIZE
    if method == "phash":
        import scipy.fftpack

        # imagehash: dct(dct(pixels, axis=0), axis=1), keep the top-left 8x8, compare with its median
        low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)[:, :n, :n].reshape(len(inputs), n * n)
        bits = low > np.median(low, axis=1)[:, None]
    else:
        bits = (pixels[:, :, 1:] > pixels[:, :, :-1]).reshape(len(inputs), n * n)
    return [row.tobytes().hex() for row in np.packbits(bits, axis=1)]  # first bit = most significant


def read_for_hash(job: tuple[Path, str]) -> tuple[str, Any] | Exception:
    """One file read for hashing, in a pool worker or a thread: ``(path, method)`` gives
    ``(sha256 hex, hash_input pixels)``, or the exception reading it raised, as a value (one bad
    file never stops the others; the caller says whose fault it is)."""
    path, method = job
    try:
        data = Path(path).read_bytes()
        return hashlib.sha256(data).hexdigest(), hash_input(data, method)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        return error_value(exc)


def perceptual_hash(data: bytes, method: str = "phash") -> str:
    """The 64-bit perceptual hash of encoded image bytes, as 16 hex digits (raises on a bad image)."""
    return hashes_from_inputs([hash_input(data, method)], method)[0]

