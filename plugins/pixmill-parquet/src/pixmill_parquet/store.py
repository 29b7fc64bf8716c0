"""ParquetStore: part files and exports as Parquet, read back exactly and streamed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator

from pixmill.errors import InputError
from pixmill.store import BadLineHandler, Store, atomic_replace, temp_path

if TYPE_CHECKING:  # pyarrow is imported inside methods only, so `pixmill --help` stays fast
    import pyarrow.parquet as pq


class ParquetStore(Store):
    """Rows as Parquet (``.parquet``): columnar, compressed, typed, fast to read and write.

    Lists stay lists and dicts stay structs, so pandas, DuckDB and Hugging Face ``datasets`` read the
    columns as such. Rows come back exactly as written: a key written as ``None`` comes back as
    ``None``, a key a row lacks stays missing, ``7`` stays an int and ``7.0`` a float. A column whose
    values Arrow cannot hold exactly (mixed types, ints beyond int64, dicts with varying keys) is
    stored as JSON text and decoded on read; see :mod:`pixmill_parquet.codec`.

    Reading streams record batches of :attr:`batch_size` rows; :meth:`write_file` streams row groups
    of :attr:`row_group_size` rows, so neither ever holds a whole large file in memory.
    """

    name = "parquet"
    suffix = ".parquet"
    description = "Parquet files (pyarrow): typed columns, lists and structs kept"

    row_group_size: ClassVar[int] = 50_000
    # The rows of one batch are alive together: small batches keep memory flat and read no slower
    # (4-32k rows read fastest in bench_stores.py; 64k is slower).
    batch_size: ClassVar[int] = 8192
    # zstd: smaller files than snappy at about the same speed on these rows (bench/bench_stores.py).
    compression: ClassVar[str] = "zstd"

    # -- writing --------------------------------------------------------------------------------
    def write_part(self, path: Path, rows: list[dict]) -> None:
        import pyarrow.parquet as pq

        from . import codec

        table = codec.encode(rows)
        tmp = temp_path(path)
        try:
            pq.write_table(table, tmp, row_group_size=self.row_group_size, compression=self.compression)
            atomic_replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    def write_file(self, path: Path, rows: Iterable[dict], metadata: dict[str, str] | None = None) -> int:
        """Write ``rows`` as one file, one row group per :attr:`row_group_size` rows, and count them.

        ``metadata`` goes into the schema metadata (e.g. ``huggingface``: the feature types that
        ``datasets`` reads), next to the store's own key.

        The schema comes from the first row group. When a later one does not fit it (a new key, a
        type that changes), the rows written so far are rewritten under a schema that holds both
        (see :func:`pixmill_parquet.codec.merge`), in a second temp file, and writing goes on there.
        """
        from . import codec

        tmp = temp_path(path)
        writer: pq.ParquetWriter | None = None
        count = 0
        try:
            for chunk in codec.chunked(rows, self.row_group_size):
                table = codec.encode(chunk)
                if writer is None:
                    writer = self._writer(tmp, table.schema, metadata)
                else:
                    fitted = codec.fit(table, writer.schema)
                    if fitted is None:
                        merged = _with_metadata(codec.merge(writer.schema, table.schema), metadata)
                        writer, tmp = self._rewrite(writer, tmp, merged)
                        fitted = codec.fit(table, writer.schema)
                        assert fitted is not None, "a merged schema fits both of its sources"
                    table = fitted
                writer.write_table(table, row_group_size=self.row_group_size)
                count += table.num_rows
            if writer is None:
                writer = self._writer(tmp, codec.encode([]).schema, metadata)
            writer.close()
            atomic_replace(tmp, path)
        except BaseException:
            if writer is not None:
                writer.close()
            _unlink(tmp)
            raise
        return count

    def _writer(self, path: Path, schema: Any, metadata: dict[str, str] | None = None) -> pq.ParquetWriter:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, _with_metadata(schema, metadata), compression=self.compression)

    def _rewrite(self, writer: pq.ParquetWriter, tmp: Path, schema: Any) -> tuple[pq.ParquetWriter, Path]:
        """Copy what ``writer`` wrote to a new temp file under ``schema``; return its open writer."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from . import codec

        writer.close()
        new_tmp = tmp.with_name(f"{tmp.name}.{os.urandom(4).hex()}.tmp")
        new_writer = self._writer(new_tmp, schema)
        try:
            with pq.ParquetFile(tmp) as old:
                for batch in old.iter_batches(batch_size=self.row_group_size):
                    fitted = codec.fit(pa.Table.from_batches([batch]), schema)
                    assert fitted is not None, "a merged schema fits both of its sources"
                    new_writer.write_table(fitted, row_group_size=self.row_group_size)
        except BaseException:
            new_writer.close()
            _unlink(new_tmp)
            raise
        _unlink(tmp)
        return new_writer, new_tmp

    def check_input(self, path: Path, into: Store) -> None:
        """A Parquet input copied into JSON-lines step files: refuse columns JSON cannot hold
        faithfully, before any work (see :mod:`pixmill_parquet.input_check`)."""
        if into.name == self.name:
            return  # Parquet step files keep every Arrow type as it is
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .input_check import check_columns, report_non_finite

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc) from None
        check_columns(path, schema)
        report_non_finite(path, schema)

    # -- reading --------------------------------------------------------------------------------
    def read_part(self, path: Path, on_bad_line: BadLineHandler | None = None) -> Iterator[dict]:
        """Stream the rows of a Parquet file, one record batch at a time.

        Parquet has no lines to skip: ``on_bad_line`` is unused, and a file pyarrow cannot read
        raises :class:`pixmill.errors.InputError` naming it.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        from . import codec

        errors = (pa.ArrowException, OSError, json.JSONDecodeError)
        try:
            pf = pq.ParquetFile(path)
        except FileNotFoundError:
            raise
        except errors as exc:
            raise _unreadable(path, exc) from None
        with pf:
            json_cols = codec.json_columns(pf.schema_arrow)
            batches = pf.iter_batches(batch_size=self.batch_size)
            while True:
                try:
                    batch = next(batches, None)
                    if batch is None:
                        return
                    rows = codec.decode(batch, json_cols)
                except errors as exc:
                    raise _unreadable(path, exc) from None
                yield from rows


def _with_metadata(schema: Any, metadata: dict[str, str] | None) -> Any:
    """``schema`` with the caller's file metadata added (the store's own key is kept)."""
    if not metadata:
        return schema
    extra = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in metadata.items()}
    return schema.with_metadata({**(schema.metadata or {}), **extra})


def _unreadable(path: Path, exc: BaseException) -> InputError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(
        f"{path}: not a readable Parquet file ({reason})",
        "re-create or re-export the file; if it is a part of a run, delete it and rerun to recompute it",
    )


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
