"""The Store base class: how one step's rows are written to and read from files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator

# Called with (line number, raw text, error message) for a malformed input record that is skipped.
BadLineHandler = Callable[[int, str, str], None]


class Store:
    """Writes and reads *part files* of rows.

    The runner owns the folder layout, the ledger of committed parts and resume; a store only turns
    a list of row dicts into one file and back. Contract (checked by ``pixmill_testing.StoreContract``,
    from the pixmill-testing distribution):

    - :meth:`write_part` creates ``path`` atomically: a reader sees the whole file or none of it
      (write a temp file in the same folder, fsync, rename).
    - :meth:`read_part` streams rows back equal to what was written: nested dicts, lists, unicode,
      ``None``, ints and floats round-trip as Python values.
    - ``suffix`` is the part files' extension; it also picks the store for input/export files.
    """

    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def write_part(self, path: Path, rows: list[dict]) -> None:
        raise NotImplementedError

    def read_part(self, path: Path, on_bad_line: BadLineHandler | None = None) -> Iterator[dict]:
        """Stream the rows of a file. A malformed record raises :class:`pixmill.errors.InputError`
        naming the file and line, unless ``on_bad_line`` is given (then it is called and skipped)."""
        raise NotImplementedError

    def check_input(self, path: Path, into: Store) -> None:
        """Before a run copies the input file ``path`` (in this store's format) into step files of
        store ``into``: raise :class:`pixmill.errors.InputError` naming the column and the fix for
        values ``into`` cannot hold faithfully. Default: nothing to check."""

    def write_file(self, path: Path, rows: Iterable[dict], metadata: dict[str, str] | None = None) -> int:
        """Write a whole file from a stream of rows (export). Default: one part. Returns the count.

        ``metadata``: file-level key/value pairs for formats that have them (Parquet schema
        metadata, e.g. the ``huggingface`` feature types); formats without them ignore it.
        """
        rows = list(rows)
        self.write_part(path, rows)
        return len(rows)


def atomic_replace(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it over ``final`` and fsync the folder, so a crash leaves one or the other."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")
