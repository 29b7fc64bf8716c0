"""Images as uploads: sent as they are when the provider takes them, else prepared once per file.

An :class:`UploadRule` says what a provider takes as it is (file formats, pixel modes, sizes).
An input image file that passes is uploaded byte for byte: no decode, no resize, no re-encode. One
that does not (a BMP, a palette PNG, an image outside the model's pixel bounds) is decoded, resized
and encoded in the rule's format (PNG by default: lossless; JPEG or WebP at ``quality``).

:class:`Uploader` does that work once per file for the rows of a step (a source image shared by
10,000 edit rows is read once), off the event loop: files sent as they are and small images in the calling thread, large images
that must be decoded in a process pool sized to the cores (forked on Linux; elsewhere the calling threads do it), so
decoding, encoding and base64-encoding 1024 px images runs on every core in parallel instead of on
one core behind the GIL.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from ..cpu_pool import cpu_pool, forget_broken_pool
from ..image_files import ImageFile, pixels
from ..options import Option
from .media import b64encode, to_data_url

log = logging.getLogger("pixmill.http")

ENCODINGS = ("png", "jpeg", "webp")
DEFAULT_QUALITY = 90
MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif"}
# Images up to this many pixels are prepared in the calling thread: below it a hop to another
# process costs more than the work (a 512 px image decodes and encodes in a few milliseconds).
# Files sent as they are never take the hop (see Uploader.submit).
INLINE_PIXELS = 512 * 512
CACHE_BYTES = 256 << 20  # prepared uploads kept for reuse within a step (the oldest go first)


@dataclass(frozen=True)
class UploadRule:
    """What a provider takes as it is, and how to prepare what it does not.

    - ``formats``: file formats (PIL names) uploaded byte for byte;
    - ``modes``: file pixel modes taken as they are (``None``: any mode of those formats);
    - ``size``: ``(height, width) -> (height, width)``, the size the provider should get; an image
      is taken as it is only when this returns its own size. Must be picklable (a module-level
      function or a :func:`functools.partial` of one): it runs in worker processes.
    - ``encoding`` (``png``, ``jpeg``, ``webp``) and ``quality`` (1-100, JPEG and WebP only) for
      images that must be re-encoded;
    - ``data_url``: build the ``data:`` URL in the worker too (chat APIs send images that way).
    """

    formats: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP", "GIF"})
    modes: frozenset[str] | None = None
    size: Callable[[int, int], tuple[int, int]] | None = None
    encoding: str = "png"
    quality: int = DEFAULT_QUALITY
    data_url: bool = False

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"upload encoding {self.encoding!r}: choose one of {', '.join(ENCODINGS)}")
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"upload quality {self.quality}: choose 1-100")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` the provider should get."""
        if self.size is None:
            return width, height
        h, w = self.size(height, width)
        return w, h

    def takes_as_is(self, image: ImageFile) -> bool:
        return (image.format in self.formats and (self.modes is None or image.file_mode in self.modes)
                and self.target_size(image.width, image.height) == (image.width, image.height))


@dataclass(frozen=True)
class Upload:
    """An image ready to send: its bytes and their MIME type, or (when the rule asked for data URLs)
    their base64 encoding alone (``b64``, ASCII bytes: a chat body splices them in as they are,
    without a text copy of megabytes)."""

    data: bytes
    mime: str
    b64: bytes = b""

    @property
    def suffix(self) -> str:
        return next((s for f, s in SUFFIXES.items() if MIMES[f] == self.mime), ".png")

    def data_url(self) -> str:
        """``data:<mime>;base64,...`` as text (for clients that take the URL as a string)."""
        if self.b64:
            return f"data:{self.mime};base64,{self.b64.decode('ascii')}"
        return to_data_url(self.data, self.mime)

    def data_url_parts(self) -> tuple[bytes, bytes]:
        """The data URL as ``(b"data:<mime>;base64,", base64 bytes)``, copying nothing when the
        base64 is already made."""
        return f"data:{self.mime};base64,".encode("ascii"), self.b64 or b64encode(self.data)


def upload_options(default: str = "png", what: str = "images the provider cannot take as they are are "
                   "re-encoded", prefix: str = "upload") -> tuple[Option, Option]:
    """``--<prefix>-format`` and ``--<prefix>-quality``: how images are re-encoded when they must be.
    Both enter the step key: a lossy format changes the pixels the model sees."""
    return (
        Option(f"{prefix}_format", str, default, f"{what}: png (lossless, zlib level 1), jpeg or webp",
               choices=ENCODINGS),
        Option(f"{prefix}_quality", int, DEFAULT_QUALITY, f"quality (1-100) of jpeg/webp {prefix}s; png ignores it"),
    )


def prepare_upload(image: Any, rule: UploadRule) -> Upload:
    """The upload for one image (an :class:`ImageFile` or PIL image), done in this thread."""
    if isinstance(image, ImageFile) and rule.takes_as_is(image):
        data, mime = image.read_bytes(), MIMES[image.format]
    else:
        try:
            pil = pixels(image)
            size = rule.target_size(pil.width, pil.height)
            if size != (pil.width, pil.height):
                pil = resize_image(pil, size)
            data, mime = encode(pil, rule.encoding, rule.quality)
        except (OSError, ValueError) as exc:
            where = f"image {image.path}" if isinstance(image, ImageFile) else "an image"
            raise ValueError(f"{where} cannot be prepared for upload: {exc}") from None
    if rule.data_url:  # only the base64 travels back from a worker process, not the bytes twice
        return Upload(b"", mime, b64encode(data))
    return Upload(data, mime)


def resize_image(image: Any, size: tuple[int, int]) -> Any:
    """``image`` resized to ``(width, height)`` (bicubic): the one resize every engine uses, so the
    same row gives the same pixels whether the model runs here or behind an API."""
    from PIL import Image

    return image.resize(size, Image.Resampling.BICUBIC)


def encode(image: Any, encoding: str = "png", quality: int = DEFAULT_QUALITY) -> tuple[bytes, str]:
    """``(bytes, mime)`` of a PIL image in ``encoding``.

    PNG uses zlib level 1: lossless, and several times faster to write than the default level for a
    somewhat larger file (bytes are cheap next to CPU time on a local network). JPEG (4:2:0) and
    WebP (method 4) use ``quality``.
    """
    buf = io.BytesIO()
    if encoding == "png":
        if image.mode not in ("RGB", "RGBA", "L", "LA"):  # what every provider takes in a PNG
            image = image.convert("RGBA")
        image.save(buf, format="PNG", compress_level=1)
        return buf.getvalue(), "image/png"
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if encoding == "jpeg":
        image.save(buf, format="JPEG", quality=int(quality))
        return buf.getvalue(), "image/jpeg"
    image.save(buf, format="WEBP", quality=int(quality))
    return buf.getvalue(), "image/webp"


class Uploader:
    """Prepares a serving's uploads: each file once per step (while it stays in the cache), large
    images in the process pool, small ones and PIL images in the calling thread.

    :meth:`submit` returns a future at once, so a batch can start every upload of its rows before
    waiting for the first; :meth:`prepare` waits.
    """

    def __init__(self, rule: UploadRule, cache_bytes: int = CACHE_BYTES):
        self.rule = rule
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple, Future[Upload]] = OrderedDict()
        self._bytes = 0  # size of the finished uploads in the cache
        self._lock = threading.RLock()  # RLock: a pool future done already runs its callback inside submit
        self.prepared = 0  # uploads actually prepared (cache misses): what a test can count

    def submit(self, image: Any) -> Future[Upload]:
        if not isinstance(image, ImageFile):
            return _run_here(prepare_upload, image, self.rule)
        key = image.key
        with self._lock:
            fut = self._cache.get(key)
            if fut is not None:
                self._cache.move_to_end(key)
                return fut
            self.prepared += 1
            # The pool only for decoding work worth a process hop: a file sent as it is costs a
            # read and a base64 pass here, less than moving megabytes back from a worker.
            heavy = image.width * image.height > INLINE_PIXELS and not self.rule.takes_as_is(image)
            pooled = _in_pool(image, self.rule) if heavy else None
            fut = pooled or Future()
            self._cache[key] = fut  # another row with this file waits on this future
            fut.add_done_callback(lambda done, key=key: self._account(key, done))
        if pooled is None:  # prepared here, outside the lock: the batches' threads read files at once
            _complete(fut, prepare_upload, image, self.rule)
        return fut

    def prepare(self, image: Any) -> Upload:
        return self.submit(image).result()

    def _account(self, key: tuple, fut: Future[Upload]) -> None:
        """Count a finished upload still in the cache, then drop the oldest beyond the budget."""
        if fut.exception() is not None:
            return
        with self._lock:
            if self._cache.get(key) is not fut:
                return
            self._bytes += _size(fut.result())
            while self._bytes > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                if old.done() and old.exception() is None:
                    self._bytes -= _size(old.result())


def _size(upload: Upload) -> int:
    return len(upload.data) + len(upload.b64)


def _run_here(fn: Callable[..., Upload], *args: Any) -> Future[Upload]:
    fut: Future[Upload] = Future()
    _complete(fut, fn, *args)
    return fut


def _complete(fut: Future[Upload], fn: Callable[..., Upload], *args: Any) -> None:
    try:
        fut.set_result(fn(*args))
    except BaseException as exc:  # the caller gets it from the future, like a pool's
        fut.set_exception(exc)  # (an interrupt too: rows waiting on this file must not wait forever)
        if not isinstance(exc, Exception):
            raise


def _in_pool(image: ImageFile, rule: UploadRule) -> Future[Upload] | None:
    from concurrent.futures.process import BrokenProcessPool

    pool = cpu_pool()
    if pool is None:
        return None
    try:
        return pool.submit(prepare_upload, image, rule)
    except BrokenProcessPool:  # a worker died (out of memory?): start a new pool next time
        log.warning("the upload pool broke; preparing uploads in this process until it restarts")
        forget_broken_pool()
        return None


__all__ = ["DEFAULT_QUALITY", "ENCODINGS", "Upload", "UploadRule", "Uploader", "encode", "prepare_upload",
           "resize_image", "upload_options"]
