"""Which files pixmill reads on a row's behalf: the roots rule.

A row names files by path, and a row may come from anywhere (a scraped dataset, an LLM, a
colleague). Reading such a file puts it somewhere else: into an exported dataset, a gallery page,
or an upload to an API (an edit or a judge request). So pixmill reads a file named by a row only
when, with every symlink resolved, it lies under

- the run folder,
- the input file's folder (the working directory for a run without an input file),
- or a folder the user allowed: ``--allow-root DIR`` (``pixmill run``, ``export``, ``gallery``),
  ``allow_roots:`` in a pipeline file, ``Storage(allow_roots=[...])``, or the
  ``PIXMILL_ALLOW_ROOTS`` environment variable (folders separated by ``:``).

Anything else (an absolute path elsewhere, ``../`` out of the folder, a symlink to ``/etc/passwd``)
is a row error naming the path and the way to allow it; the file is never read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

ENV_VAR = "PIXMILL_ALLOW_ROOTS"


class OutsideRoots(ValueError):
    """A row names a file outside every allowed root (a row error: the row fails, the run goes on)."""


class NotAnImage(ValueError):
    """A row's image field names a file that is not an image (never copied or uploaded)."""


def env_roots() -> list[Path]:
    """The folders listed in ``PIXMILL_ALLOW_ROOTS``."""
    return [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]


class FileRoots:
    """The folders whose files may be read on a row's behalf (see the module docstring)."""

    def __init__(self, roots: Iterable[Path | str]):
        resolved: dict[Path, None] = {}
        for root in [*roots, *env_roots()]:
            resolved.setdefault(Path(root).expanduser().resolve())
        self.roots = tuple(resolved)

    def allows(self, path: Path) -> bool:
        """Whether ``path``, symlinks resolved, lies under one of the roots."""
        real = Path(os.path.realpath(path))
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def check(self, path: Path, named: str | None = None) -> Path:
        """``path`` with symlinks resolved, or :class:`OutsideRoots` naming it and the fix."""
        real = Path(os.path.realpath(path))
        if any(real == root or real.is_relative_to(root) for root in self.roots):
            return real
        shown = named if named is not None else str(path)
        target = "" if str(real) == str(path) else f" (it resolves to {real})"
        raise OutsideRoots(f"file {shown!r} is outside the run and input folders{target}; pixmill reads "
                           f"only files there unless allowed: pass --allow-root DIR or set {ENV_VAR}")


def run_roots(run_dir: Path, input_dir: Path, extra: Iterable[Path | str] = ()) -> FileRoots:
    """The roots of a run: its folder, its input's folder, and what the user allowed."""
    return FileRoots([run_dir, input_dir, *extra])


def check_image_file(path: Path, named: str | None = None) -> None:
    """Raise :class:`NotAnImage` unless ``path`` is an image file: its first bytes are a PNG,
    JPEG, WebP or GIF signature (cheap), else Pillow must recognise it (reads the header only)."""
    from .http.media import sniff_image

    with open(path, "rb") as fh:
        if sniff_image(fh.read(16)) is not None:
            return
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            fmt = img.format
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise NotAnImage(f"file {named or str(path)!r} is not an image ({type(exc).__name__})") from None
    if not fmt:
        raise NotAnImage(f"file {named or str(path)!r} is not an image")
