"""Input images as files: what an operator hands a serving that uploads images instead of decoding them.

An operator that reads images named in rows gives a serving either decoded PIL images (local
models) or :class:`ImageFile` references (servings whose :meth:`pixmill.serving.Serving.takes_image_files`
is true: the HTTP servings). A reference knows the file's format, size and mode from its header
only, so an upload can send the file's bytes as they are when the provider takes them, and decode,
resize and encode (in a worker process) only when it must. Decoding 1024 px images in the operator
would cost more CPU than the whole request machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What to say about bytes PIL does not recognise (its own message names an in-memory buffer).
NOT_AN_IMAGE = "not an image file PIL can read (check the file, or its extension and content)"


@dataclass(frozen=True)
class ImageFile:
    """An image file, not decoded: ``path`` (absolute), the ``mode`` the operator wants its pixels
    in (``RGB`` for images, ``L`` for masks), and the header facts read when it was made.

    :meth:`open` decodes it (for servings that need pixels); :func:`probe_image` makes one and
    fails on a file that is missing or not an image.
    """

    path: Path
    mode: str = "RGB"
    format: str = ""  # PIL's name: PNG, JPEG, WEBP, GIF...
    size: tuple[int, int] = (0, 0)  # (width, height), as PIL gives it
    file_mode: str = ""  # the file's own pixel mode (RGB, RGBA, L, P...)
    stamp: tuple[int, int] = field(default=(0, 0))  # (bytes, mtime_ns): a changed file is another image

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    @property
    def key(self) -> tuple[str, int, int, str]:
        """Identifies the file's content for caches: path, size in bytes, mtime, wanted mode."""
        return (str(self.path), *self.stamp, self.mode)

    def read_bytes(self) -> bytes:
        return Path(self.path).read_bytes()

    def open(self) -> Any:
        """The decoded pixels, in :attr:`mode` (fully read; the file is closed)."""
        return decode_image(self.path, self.mode)


def probe_image(path: Path, mode: str = "RGB") -> ImageFile:
    """An :class:`ImageFile` for ``path`` from its header; raises ``FileNotFoundError`` or ``OSError``
    (not an image) without decoding any pixel."""
    from PIL import Image

    path = Path(path)
    st = path.stat()
    with Image.open(path) as img:
        return ImageFile(path=path, mode=mode, format=str(img.format or ""), size=(int(img.width), int(img.height)),
                         file_mode=str(img.mode), stamp=(st.st_size, st.st_mtime_ns))


def decode_image(path: Path, mode: str = "RGB") -> Any:
    """Decode an image file fully and convert it to ``mode``."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return img if img.mode == mode else img.convert(mode)


def load_image(path: Path, mode: str = "RGB", as_file: bool = False) -> Any:
    """An image named in a row: an :class:`ImageFile` (header only) with ``as_file``, else decoded
    PIL pixels in ``mode``. Raises ``FileNotFoundError`` or ``OSError`` (not a readable image)."""
    return probe_image(path, mode) if as_file else decode_image(path, mode)


def pixels(image: Any) -> Any:
    """PIL pixels for an image part or request image: an :class:`ImageFile` is decoded, a PIL image
    is returned as it is."""
    return image.open() if isinstance(image, ImageFile) else image


__all__ = ["NOT_AN_IMAGE", "ImageFile", "decode_image", "load_image", "pixels", "probe_image"]
