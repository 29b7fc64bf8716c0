"""Content and perceptual hashes of image files (sha256 of the bytes; pHash or dHash via imagehash).

The perceptual hash is 64 bits, kept in rows as 16 hex digits. Large images are reduced before
hashing (JPEG files decode straight to a small size), which changes nothing a 32x32 pHash can see
and makes hashing cost about the same for a 256 px and a 4k image.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

HASH_METHODS = ("phash", "dhash")
_WORK_SIDE = 128  # pHash looks at 32x32; reducing to >= 4x that first loses nothing it uses


def perceptual_hash(data: bytes, method: str = "phash") -> str:
    """The 64-bit perceptual hash of encoded image bytes, as 16 hex digits (raises on a bad image)."""
    import imagehash
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG":
            img.draft("L", (_WORK_SIDE, _WORK_SIDE))
        gray = img.convert("L")
    factor = min(gray.size) // _WORK_SIDE
    if factor > 1:
        gray = gray.reduce(factor)
    value = imagehash.phash(gray) if method == "phash" else imagehash.dhash(gray)
    return str(value)


def file_hashes(path: Path, method: str = "phash") -> dict[str, str]:
    """``{"sha256": ..., method: ...}`` of one image file, reading it once."""
    data = Path(path).read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), method: perceptual_hash(data, method)}
