"""Rows <-> Arrow tables, exactly: what the Parquet store writes and how it reads it back.

This module imports pyarrow at its top; only :mod:`pixmill_parquet.store` methods import it, so
loading the plugin (``pixmill --help``) never imports pyarrow.

Arrow's type inference is lossy in a few corners, and a part file must give back the rows that were
written, so the encoding is:

- One column per top-level key, in first-seen order, its type inferred from all rows' values.
  Lists stay lists and dicts stay structs, so other tools (pandas, Hugging Face datasets, DuckDB)
  read them as such.
- A row that lacks a key gets null in that column, and the names of the keys it lacks go into the
  hidden list<string> column :data:`ABSENT` (present only when some row lacks a key), so reading
  restores the row's exact keys: a key written as ``None`` comes back as ``None``, a missing key
  stays missing.
- A column whose values Arrow cannot hold exactly is stored as JSON text, named in the schema
  metadata and decoded on read: values of types that do not unify (a str in one row, a dict in
  another), ints beyond int64, ints or bools among floats (Arrow would make ``7`` into ``7.0``),
  str among bytes, dicts whose keys differ between rows or hold ``None`` (a struct field cannot tell a
  missing key from a null) and empty dicts (Parquet has no struct without fields).
"""

from __future__ import annotations

import gc
import json
from itertools import islice
from operator import itemgetter
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

ABSENT = "__pixmill_absent__"
META_KEY = b"pixmill"
FORMAT = 1
_ABSENT_TYPE = pa.list_(pa.string())
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode


# -- schema metadata ----------------------------------------------------------------------------
def json_columns(schema: pa.Schema) -> frozenset[str]:
    """The columns of ``schema`` that hold JSON text to decode on read."""
    meta = schema.metadata or {}
    raw = meta.get(META_KEY)
    if raw is None:
        return frozenset()
    return frozenset(json.loads(raw).get("json_columns", ()))


def _make_schema(fields: list[pa.Field], json_cols: Iterable[str]) -> pa.Schema:
    names = {f.name for f in fields}
    meta = {"format": FORMAT, "json_columns": sorted(c for c in json_cols if c in names)}
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})


# -- encoding -----------------------------------------------------------------------------------
def encode(rows: list[dict]) -> pa.Table:
    """One table holding ``rows`` exactly (see the module docstring), its types inferred."""
    keys: dict[str, Any] = {}
    for row in rows:
        keys.update(row)  # union of keys in first-seen order; C-speed, values are ignored
    if ABSENT in keys:
        raise ValueError(f"rows may not have a key named {ABSENT!r}: the Parquet store uses it")
    names = list(keys)
    ragged = list(map(len, rows)).count(len(names)) != len(rows)
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    json_cols: list[str] = []
    for name in names:
        # All rows hold every key in the common case: itemgetter is the fastest extraction.
        values = [r.get(name) for r in rows] if ragged else list(map(itemgetter(name), rows))
        arr = _exact_array(values)
        if arr is None:
            arr = _json_array(name, values)
            json_cols.append(name)
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    if ragged or not names:
        # Also added for rows without any key: a table needs a column to have rows.
        # A row holds all keys exactly when it has as many as the union: only the others are scanned.
        n = len(names)
        absent = [None if len(r) == n else [k for k in names if k not in r] for r in rows]
        arrays.append(pa.array(absent, type=_ABSENT_TYPE))
        fields.append(pa.field(ABSENT, _ABSENT_TYPE))
    return pa.Table.from_arrays(arrays, schema=_make_schema(fields, json_cols))


def _json_array(name: str, values: list) -> pa.Array:
    try:
        return pa.array([None if v is None else _dumps(v) for v in values], type=pa.string())
    except (TypeError, ValueError) as exc:  # bytes, sets, objects: neither Arrow nor JSON can hold them
        raise TypeError(f"column {name!r}: values of mixed types that Arrow cannot unify, and one that JSON "
                        f"cannot hold either ({exc}); give the key values of one type") from None


def _exact_array(values: list) -> pa.Array | pa.ChunkedArray | None:
    """``values`` as an Arrow array that gives them back exactly, or None if Arrow cannot."""
    try:
        arr = pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return None
    if _has_empty_struct(arr.type):
        return None
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    if any(_struct_nulls(chunk) for chunk in chunks):
        return None
    if _needs_scan(arr.type, chunks) and not all(_same_py(v, arr.type) for v in values):
        return None
    return arr


def _has_empty_struct(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return t.num_fields == 0 or any(_has_empty_struct(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_empty_struct(t.value_type)
    return False


def _struct_nulls(arr: pa.Array) -> bool:
    """Whether a struct somewhere in ``arr`` has a null field in a non-null struct (ambiguous)."""
    t = arr.type
    if pa.types.is_struct(t):
        # flatten() merges the struct's own validity into its fields, so a field with more nulls
        # than the struct has a null (or missing key) in some dict that is not itself None.
        children = arr.flatten()
        return any(c.null_count > arr.null_count or _struct_nulls(c) for c in children)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _struct_nulls(arr.flatten())
    return False


def _needs_scan(t: pa.DataType, chunks: list[pa.Array]) -> bool:
    """Whether Arrow may have converted a Python value silently (int/bool -> double, str -> bytes).

    Ints and bools land on whole numbers, so a double leaf with no whole number needs no scan.
    """
    if not _has_leaf(t, (pa.types.is_floating, pa.types.is_binary)):
        return False
    for chunk in chunks:
        for leaf in _leaves(chunk):
            if pa.types.is_binary(leaf.type):
                return True
            if pa.types.is_floating(leaf.type) and leaf.null_count < len(leaf):
                if pc.any(pc.equal(leaf, pc.floor(leaf))).as_py():
                    return True
    return False


def _has_leaf(t: pa.DataType, tests: tuple) -> bool:
    if pa.types.is_struct(t):
        return any(_has_leaf(f.type, tests) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_leaf(t.value_type, tests)
    return any(test(t) for test in tests)


def _leaves(arr: pa.Array) -> Iterator[pa.Array]:
    t = arr.type
    if pa.types.is_struct(t):
        for child in arr.flatten():
            yield from _leaves(child)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        yield from _leaves(arr.flatten())
    else:
        yield arr


def _same_py(value: Any, t: pa.DataType) -> bool:
    """Whether Arrow stores ``value`` as type ``t`` without changing its Python type."""
    if value is None:
        return True
    if pa.types.is_floating(t):
        return type(value) is float
    if pa.types.is_binary(t):
        return isinstance(value, bytes)
    if pa.types.is_struct(t):
        return all(_same_py(value.get(f.name), f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        vt = t.value_type
        return all(_same_py(v, vt) for v in value)
    return True


# -- conforming a table to another schema (streaming writes) ------------------------------------
def fit(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``table`` (from :func:`encode`) reshaped to ``schema`` without changing its rows, or None.

    Columns ``table`` lacks become nulls listed in :data:`ABSENT`; a column turns into JSON text
    where ``schema`` has JSON; an all-null column takes ``schema``'s type. None when ``table`` has a
    column ``schema`` lacks or a type ``schema`` cannot hold.
    """
    if table.schema.equals(schema, check_metadata=True):
        return table
    src_json, dst_json = json_columns(table.schema), json_columns(schema)
    if not set(table.column_names) <= set(schema.names):
        return None
    n = table.num_rows
    missing = [f.name for f in schema if f.name != ABSENT and f.name not in table.column_names]
    if missing and ABSENT not in schema.names:
        return None
    arrays = []
    for field in schema:
        if field.name == ABSENT:
            arrays.append(_absent_column(table, missing))
        elif field.name not in table.column_names:
            arrays.append(pa.nulls(n, type=field.type))
        else:
            col = _fit_column(table.column(field.name), field, field.name in src_json, field.name in dst_json)
            if col is None:
                return None
            arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def _absent_column(table: pa.Table, missing: list[str]) -> pa.ChunkedArray | pa.Array:
    if ABSENT in table.column_names and not missing:
        return table.column(ABSENT)
    if not missing:
        return pa.nulls(table.num_rows, type=_ABSENT_TYPE)
    old = table.column(ABSENT).to_pylist() if ABSENT in table.column_names else [None] * table.num_rows
    return pa.array([(a or []) + missing for a in old], type=_ABSENT_TYPE)


def _fit_column(col: pa.ChunkedArray, field: pa.Field, src_json: bool, dst_json: bool):
    if src_json == dst_json and col.type.equals(field.type):
        return col
    if dst_json and not src_json:
        return _json_array(field.name, col.to_pylist())
    if not src_json and not dst_json and _widens(col.type, field.type):
        return col.cast(field.type)
    return None


def _widens(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether every value of type ``src`` is a value of ``dst`` (null-typed parts widen)."""
    if src.equals(dst) or pa.types.is_null(src):
        return True
    if pa.types.is_list(src) and pa.types.is_list(dst):
        return _widens(src.value_type, dst.value_type)
    if pa.types.is_struct(src) and pa.types.is_struct(dst):
        return [f.name for f in src] == [f.name for f in dst] and all(
            _widens(a.type, b.type) for a, b in zip(src, dst, strict=True)
        )
    return False


def merge(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    """A schema that both ``a``'s and ``b``'s tables :func:`fit`: columns united, conflicts as JSON."""
    a_json, b_json = json_columns(a), json_columns(b)
    by_name = {f.name: f for f in b}
    fields: list[pa.Field] = []
    json_cols: set[str] = set()
    names = [n for n in a.names if n != ABSENT] + [n for n in b.names if n != ABSENT and n not in a.names]
    for name in names:
        fa = a.field(name) if name in a.names else None
        fb = by_name.get(name)
        if fa is None or fb is None:
            field, is_json = (fa, name in a_json) if fb is None else (fb, name in b_json)
        elif name in a_json or name in b_json:
            field, is_json = pa.field(name, pa.string()), True
        elif _widens(fa.type, fb.type):
            field, is_json = fb, False
        elif _widens(fb.type, fa.type):
            field, is_json = fa, False
        else:
            field, is_json = pa.field(name, pa.string()), True
        fields.append(field)
        if is_json:
            json_cols.add(name)
    # Rows of a table that lacks one of the united columns will list it as absent.
    if ABSENT in a.names or ABSENT in b.names or set(a.names) != set(b.names):
        fields.append(pa.field(ABSENT, _ABSENT_TYPE))
    return _make_schema(fields, json_cols)


# -- decoding -----------------------------------------------------------------------------------
def decode(batch: pa.RecordBatch, json_cols: frozenset[str]) -> list[dict]:
    """The rows of one record batch as plain Python dicts, as they were written."""
    # The conversion builds a few containers per row, all alive at the end: a collection in the middle
    # frees nothing, yet in a process holding millions of objects each one walks them all. Pausing
    # the collector for this one C call halves a pipeline step's time (bench/bench_stores.py).
    if gc.isenabled():
        gc.disable()
        try:
            rows = batch.to_pylist()
        finally:
            gc.enable()
    else:
        rows = batch.to_pylist()
    for name in json_cols:
        if name in batch.schema.names:
            loads = json.loads
            for row in rows:
                value = row[name]
                if value is not None:
                    row[name] = loads(value)
    if ABSENT in batch.schema.names:
        for row in rows:
            absent = row.pop(ABSENT)
            if absent:
                for key in absent:
                    del row[key]
    return rows


def chunked(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Lists of up to ``size`` rows from a stream of rows."""
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk
