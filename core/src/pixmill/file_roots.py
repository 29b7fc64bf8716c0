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


def resolve_row_path(path: str, run_dir: Path, input_dir: Path) -> Path:
    """The file a path in a row names: absolute, else relative to the run folder (generated
    files), the input file's folder, or the working directory (DataFlow-MM inputs name files
    relative to where the pipeline runs), the first that exists; else the input folder's."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    for base in (run_dir, input_dir, Path.cwd()):
        if (base / p).exists():
            return base / p
    return input_dir / p


class RunFiles:
    """The image files a run's rows name, as the run reader, the gallery and the export see them:
    the path rule of :func:`resolve_row_path` (what :meth:`pixmill.StepContext.resolve` uses), then
    the roots rule and the image check. Results are cached: a run names the same input image many
    times.

    A file outside the allowed roots (symlinks resolved) or that is not an image is refused:
    :meth:`find` gives None and :attr:`refused` holds the reason, so it is never copied into an
    export or linked from a gallery."""

    def __init__(self, run_dir: Path, input_dir: Path, allow_roots: Iterable[Path | str] = ()):
        self.run_dir = Path(run_dir).resolve()
        self.input_dir = Path(input_dir).resolve()
        self.roots = run_roots(self.run_dir, self.input_dir, allow_roots)
        self.refused: dict[str, str] = {}  # path as the row names it -> why it is not read
        self._cache: dict[str, Path | None] = {}

    def find(self, path: str) -> Path | None:
        """The existing, allowed image file ``path`` names (symlinks resolved), or None."""
        try:
            return self._cache[path]
        except KeyError:
            pass
        candidate = resolve_row_path(path, self.run_dir, self.input_dir)
        found = None
        if candidate.is_file():
            try:
                found = self.roots.check(candidate, named=path)
                check_image_file(found, named=path)
            except ValueError as exc:
                self.refused[path] = str(exc)
                found = None
        self._cache[path] = found
        return found

    def named_file(self, path: str) -> bool:
        """Whether ``path`` names an existing file, allowed or refused (an image column's value)."""
        return self.find(path) is not None or path in self.refused

    def is_generated(self, absolute: Path) -> bool:
        """Whether a found image was written by the run (else it came with the input)."""
        return absolute.is_relative_to(self.run_dir)


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
