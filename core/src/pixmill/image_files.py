"""Images named in rows: the one way an operator opens them, and the files it hands a serving.

:func:`open_row_image` opens an image a row names: it resolves the path through the step's context
(the run folder, the input's folder, the roots rule of :mod:`pixmill.file_roots`), checks the file
is there, and decodes it, returns an :class:`ImageFile`, or hands the path to a reader of the
operator's own (hashes, header figures). Whatever goes wrong with the row's file is one
:class:`ImageError` whose one-line message names the row, the field, the file and the fix; the
machine's errors (permissions, I/O, memory) are raised as they are and stop the step.

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
from typing import TYPE_CHECKING, Any, Callable

from .errors import RowError, is_environment_error
from .rows import ID_KEY

if TYPE_CHECKING:
    from .context import StepContext

# What a row's image path is relative to (said in the "not found" message).
PATHS_FIX = "paths are relative to the run folder or the input file's folder"


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


class ImageError(RowError, ValueError):
    """A row names an image that cannot be used: missing, outside the allowed folders, or not a
    readable image. The row fails with this one-line message (row, field, file, fix); the run goes on.
    A ``ValueError`` too, so operators that fail a row on bad input catch it with the rest."""


def open_row_image(ctx: StepContext, path: str, field: str, *, row: dict | None = None, mode: str = "RGB",
                   as_file: bool = False, read: Callable[[Path], Any] | None = None) -> Any:
    """The image ``path`` named in ``row[field]``: decoded PIL pixels in ``mode``, an
    :class:`ImageFile` (header checked, pixels left on disk) with ``as_file``, or whatever ``read``
    returns for the file's absolute path (hashes, header figures).

    Raises :class:`ImageError` for the row's fault (outside the allowed roots, missing, not a
    readable image) and lets the machine's errors through (see
    :func:`pixmill.errors.is_environment_error`): those stop the step.
    """
    where = f"row {row.get(ID_KEY, '?')}: " if row is not None else ""
    try:
        resolved = ctx.readable(path)
    except ValueError as exc:  # outside the allowed folders: never read, never uploaded
        raise ImageError(f"{where}field {field!r}: {exc}") from None
    if not resolved.is_file():
        raise ImageError(f"{where}image {path!r} in field {field!r} not found (looked for {resolved}); {PATHS_FIX}")
    try:
        if read is not None:
            return read(resolved)
        return probe_image(resolved, mode) if as_file else decode_image(resolved, mode)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        if is_environment_error(exc):
            raise  # the machine's fault (permissions, I/O), not the row's: the step stops
        detail = str(exc).strip().splitlines()
        raise ImageError(f"{where}image {path!r} in field {field!r} cannot be read "
                         f"({detail[0] if detail else type(exc).__name__}); replace the file or fix the path") from None


def pixels(image: Any) -> Any:
    """PIL pixels for an image part or request image: an :class:`ImageFile` is decoded, a PIL image
    is returned as it is."""
    return image.open() if isinstance(image, ImageFile) else image


__all__ = ["ImageError", "ImageFile", "decode_image", "open_row_image", "pixels", "probe_image"]
