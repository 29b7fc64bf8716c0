"""Which Parquet input columns a non-Parquet step store (JSON lines) can hold, checked before a run.

JSON has strings, numbers, booleans, null, lists and objects. Arrow columns map onto them except:

- ``decimal``: a JSON number would come back as a float (digits lost): refused;
- ``duration`` and ``time``: no JSON form: refused;
- ``binary``: refused, except the ``{"bytes", "path"}`` image structs of Hugging Face datasets
  (and of pixmill's own ``hf`` export), which the run writes out as image files;
- ``timestamp`` and ``date``: written as ISO 8601 text (noted in the log);
- floating point: NaN and infinities have no JSON form and become null (noted in the log).

Pyarrow is imported by the caller (the store's method), never at plugin load.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pixmill.errors import InputError

log = logging.getLogger("pixmill.parquet")


def _is_image_struct(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_struct(t) and {t.field(i).name for i in range(t.num_fields)} == {"bytes", "path"}


def _problem(t: Any) -> str | None:
    """Why values of Arrow type ``t`` have no faithful JSON form, or None."""
    import pyarrow as pa

    if pa.types.is_decimal(t):
        return "decimal numbers would come back as floats (digits lost)"
    if pa.types.is_duration(t) or pa.types.is_time(t) or pa.types.is_interval(t):
        return f"{t} values have no JSON form"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "raw bytes have no JSON form"
    if pa.types.is_dictionary(t):
        return _problem(t.value_type)
    if _is_image_struct(t):
        return None  # written out as image files by the run
    if pa.types.is_struct(t):
        return next((p for p in (_problem(t.field(i).type) for i in range(t.num_fields)) if p), None)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _problem(t.value_type)
    if pa.types.is_map(t):
        return _problem(t.key_type) or _problem(t.item_type)
    return None


def check_columns(path: Path, schema: Any) -> None:
    """Raise :class:`InputError` for the first column without a faithful JSON form; log the
    columns that are converted (timestamps to text, NaN to null)."""
    import pyarrow as pa

    for field in schema:
        why = _problem(field.type)
        if why:
            raise InputError(
                f"{path}: column {field.name!r} ({field.type}): {why} in the run's JSON lines step files",
                "cast the column to float64, int64 or string before the run (e.g. with pyarrow or pandas), "
                "or run with --store parquet, which keeps it as it is")
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            log.warning("%s: column %r (%s) is written as ISO 8601 text", path, field.name, field.type)


def report_non_finite(path: Path, schema: Any) -> int:
    """Warn, per float column, how many NaN or infinite values become null; returns the total.
    Reads only the float columns."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    floats = [f.name for f in schema if pa_is_float(f.type)]
    if not floats:
        return 0
    counts = dict.fromkeys(floats, 0)
    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(columns=floats):
            for name in floats:
                col = batch.column(name)
                finite = pc.sum(pc.is_finite(col)).as_py() or 0
                counts[name] += len(col) - col.null_count - finite
    for name, n in counts.items():
        if n:
            log.warning("%s: column %r: %d NaN or infinite values have no JSON form and become null", path, name, n)
    return sum(counts.values())


def pa_is_float(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(t)
