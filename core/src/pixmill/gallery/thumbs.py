"""Thumbnails for the gallery: small JPEGs made in parallel and cached next to the HTML file."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..files import write_atomic

log = logging.getLogger("pixmill.gallery")

THUMB_SUFFIX = ".jpg"
SIDECAR_SIZE = 256  # the gallery's default thumbnail size


@dataclass
class ThumbStats:
    """What a thumbnail pass did: made, reused from the cache, failed (unreadable images)."""

    made: int = 0
    cached: int = 0
    failed: int = 0


def thumb_name(source: Path, size: int) -> str:
    """A stable file name per (source file, size): the cache key survives reruns."""
    digest = hashlib.sha1(f"{source}\x00{size}".encode()).hexdigest()[:20]
    return digest + THUMB_SUFFIX


def encode_thumb(source: Path, size: int, quality: int = 80) -> bytes:
    """A JPEG of ``source`` fitting in ``size`` x ``size``; transparency goes onto white."""
    from PIL import Image

    with Image.open(source) as im:
        im.draft("RGB", (size, size))  # JPEG sources decode at a reduced scale: much faster
        return thumb_bytes(im, size, quality)


def thumb_bytes(im, size: int, quality: int = 80) -> bytes:  # noqa: ANN001 - a PIL image
    """JPEG bytes of a PIL image scaled to fit in ``size`` x ``size`` (the image is not modified)."""
    from PIL import Image

    scale = min(1.0, size / max(im.width, im.height))
    box = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(box, Image.Resampling.BILINEAR, reducing_gap=1.0) if box != im.size else im
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size, (255, 255, 255))
        im.paste(rgba, mask=rgba.getchannel("A"))
    elif im.mode != "RGB":
        im = im.convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def sidecar_path(image_path: Path, size: int = SIDECAR_SIZE) -> Path:
    """Where a generated image's thumbnail is kept: ``images/thumbs/<name>-<size>.jpg``."""
    return image_path.parent / "thumbs" / f"{image_path.name}-{size}{THUMB_SUFFIX}"


def write_sidecar(im, image_path: Path) -> None:  # noqa: ANN001 - a PIL image
    """Write the thumbnail of a just generated image while its pixels are in memory.

    Decoding a large PNG again later is most of a gallery's cost; here it costs about a
    millisecond next to a model call, and makes galleries of any image size fast.
    """
    target = sidecar_path(image_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, thumb_bytes(im, SIDECAR_SIZE), durable=False)


class Thumbnailer:
    """Makes the thumbnails of many images, ``workers`` at a time.

    Linked mode writes ``<folder>/<hash>.jpg`` and skips files newer than their source (a rerun
    over a grown run only makes the new ones); embed mode returns ``data:`` URIs instead.
    PIL releases the GIL while decoding, resizing and encoding, so threads use every core.
    """

    def __init__(self, folder: Path | None, size: int = 256, workers: int | None = None, embed: bool = False):
        self.folder = folder
        self.size = size
        self.workers = workers or min(32, (os.cpu_count() or 2) * 2)
        self.embed = embed
        self.stats = ThumbStats()

    def make_all(self, sources: Iterable[Path]) -> dict[Path, str | None]:
        """Thumbnail of each source: a file name in ``folder`` (or a data URI), None if unreadable."""
        unique = list(dict.fromkeys(sources))
        if self.folder is not None and not self.embed:
            self.folder.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(self._one, unique))
        out: dict[Path, str | None] = {}
        for source, (value, status) in zip(unique, results, strict=True):
            out[source] = value
            setattr(self.stats, status, getattr(self.stats, status) + 1)
        return out

    def _encode(self, source: Path) -> bytes:
        sidecar = sidecar_path(source, self.size)
        try:
            if sidecar.stat().st_mtime_ns >= source.stat().st_mtime_ns:
                return sidecar.read_bytes()  # made when the image was generated
        except FileNotFoundError:
            pass
        return encode_thumb(source, self.size)

    def _one(self, source: Path) -> tuple[str | None, str]:
        try:
            if self.embed:
                data = self._encode(source)
                return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), "made"
            assert self.folder is not None
            name = thumb_name(source, self.size)
            target = self.folder / name
            try:
                if target.stat().st_mtime_ns >= source.stat().st_mtime_ns:
                    return name, "cached"
            except FileNotFoundError:
                pass
            write_atomic(target, self._encode(source), durable=False)
            return name, "made"
        except Exception as exc:  # noqa: BLE001 - one unreadable image must not sink the gallery
            log.warning("cannot make a thumbnail of %s (%s): shown as unreadable", source, exc)
            return None, "failed"
