"""The store contract (pixmill_testing) against the JSONL and Parquet stores, plus Parquet specifics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pixmill.builtins.jsonl_store import JsonlStore
from pixmill_testing import LineStoreContract, StoreContract

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pixmill_parquet.store import ParquetStore
except ImportError:  # pixmill-parquet is not installed: the JSONL store is still tested
    ParquetStore = None  # type: ignore[assignment,misc]

needs_parquet = pytest.mark.skipif(ParquetStore is None, reason="pixmill-parquet is not installed")


class TestJsonlStore(LineStoreContract):
    store_class = JsonlStore


@needs_parquet
class TestParquetStore(StoreContract):
    store_class = ParquetStore


# -- Parquet specifics ------------------------------------------------------------------------------
ROWS = [
    {
        "id": "0",
        "conversations": [{"role": "user", "content": "a fox"}],
        "images": ["x/0-0.png", "x/0-1.png"],
        "scores": {"overall": 7},
        "score": 7,
    },
    {
        "id": "1",
        "conversations": [{"role": "user", "content": "a cat"}],
        "images": [],
        "scores": {"overall": 4},
        "score": 6.5,
    },
]


@needs_parquet
def test_lists_and_dicts_are_arrow_lists_and_structs(tmp_path: Path) -> None:
    """Other tools (pandas, DuckDB, HF datasets) see real nested columns, not stringified JSON."""
    path = tmp_path / "part.parquet"
    ParquetStore().write_part(path, [{k: v for k, v in r.items() if k != "score"} for r in ROWS])
    schema = pq.read_schema(path)
    assert schema.field("images").type == pa.list_(pa.string())
    conv = schema.field("conversations").type
    assert pa.types.is_list(conv) and pa.types.is_struct(conv.value_type)
    assert [f.name for f in conv.value_type] == ["role", "content"]
    assert schema.field("scores").type == pa.struct([("overall", pa.int64())])
    assert pq.read_table(path).column("images").to_pylist() == [["x/0-0.png", "x/0-1.png"], []]


@needs_parquet
def test_mixed_type_column_is_json_text_and_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "part.parquet"
    rows = [*ROWS, {"id": "2", "score": "n/a", "scores": {"overall": 1}}, {"id": "3", "score": {"a": [1]}}]
    store = ParquetStore()
    store.write_part(path, rows)
    assert list(store.read_part(path)) == rows
    assert [type(r["score"]) for r in store.read_part(path)] == [int, float, str, dict]
    schema = pq.read_schema(path)
    assert schema.field("score").type == pa.string()  # 7 and 6.5: Arrow would read 7 back as 7.0
    assert b'"score"' in schema.metadata[b"pixmill"]
    assert schema.field("id").type == pa.string()  # the other columns keep their types
    assert pq.read_table(path).column("score").to_pylist()[:3] == ["7", "6.5", '"n/a"']


@needs_parquet
def test_streaming_write_file_uses_several_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    n = 120_000
    rows = ({"id": str(i), "prompt": f"p {i}", "images": [f"{i}.png"], "scores": {"overall": i % 10}} for i in range(n))
    assert ParquetStore().write_file(path, rows) == n
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == n
    assert meta.num_row_groups >= 3 and all(
        meta.row_group(i).num_rows <= ParquetStore.row_group_size for i in range(meta.num_row_groups)
    )
    assert pq.read_schema(path).field("scores").type == pa.struct([("overall", pa.int64())])


@needs_parquet
def test_write_file_whose_later_rows_add_keys_and_change_types(tmp_path: Path) -> None:
    """The schema of the first row group does not fit the last: rows so far are rewritten."""
    path = tmp_path / "export.parquet"
    n = 2 * ParquetStore.row_group_size + 10

    def row(i: int) -> dict:
        if i < ParquetStore.row_group_size:
            return {"id": i, "caption": None}
        return {"id": i, "caption": f"c{i}", "judge": {"score": i % 10}} if i % 2 else {"id": str(i)}

    assert ParquetStore().write_file(path, (row(i) for i in range(n))) == n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.parquet"]
    back = ParquetStore().read_part(path)
    assert all(got == row(i) for i, got in enumerate(back))
    schema = pq.read_schema(path)
    assert schema.field("caption").type == pa.string()  # all-null at first, strings later: typed
    assert schema.field("judge").type == pa.struct([("score", pa.int64())])


@needs_parquet
def test_write_file_metadata_survives_a_schema_change(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    n = ParquetStore.row_group_size + 5
    rows = [{"id": i} if i < ParquetStore.row_group_size else {"id": str(i), "new": True} for i in range(n)]
    ParquetStore().write_file(path, iter(rows), metadata={"huggingface": '{"info": {}}'})
    meta = pq.read_schema(path).metadata
    assert meta[b"huggingface"] == b'{"info": {}}' and b"pixmill" in meta
    assert list(ParquetStore().read_part(path)) == rows


@needs_parquet
def test_reads_foreign_parquet_files(tmp_path: Path) -> None:
    """Files written by other tools (no pixmill metadata) read as plain rows: Parquet input works."""
    path = tmp_path / "input.parquet"
    table = pa.table({"prompt": ["a", "b"], "images": [["1.png"], ["2.png", "3.png"]], "w": [1.5, None]})
    pq.write_table(table, path)
    assert list(ParquetStore().read_part(path)) == [
        {"prompt": "a", "images": ["1.png"], "w": 1.5},
        {"prompt": "b", "images": ["2.png", "3.png"], "w": None},
    ]


@needs_parquet
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_parquet_raises_input_error(tmp_path: Path, damage: str) -> None:
    from pixmill.errors import InputError

    path = tmp_path / "part.parquet"
    ParquetStore().write_part(path, ROWS * 100)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"PAR1" + b"\x00" * 64)
    with pytest.raises(InputError, match="not a readable Parquet file") as info:
        list(ParquetStore().read_part(path))
    assert str(path) in str(info.value) and "rerun" in str(info.value)


@needs_parquet
def test_read_part_holds_one_batch_not_the_file(tmp_path: Path) -> None:
    import tracemalloc

    class SmallBatches(ParquetStore):
        batch_size = 1000

    path = tmp_path / "big.parquet"
    store = SmallBatches()
    store.write_file(path, ({"id": str(i), "prompt": f"a photo number {i}"} for i in range(100_000)))
    tracemalloc.start()
    try:
        it = store.read_part(path)
        assert next(it) == {"id": "0", "prompt": "a photo number 0"}
        first_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        all_rows = list(it)
        full_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(all_rows) == 99_999
    assert first_peak * 20 < full_peak, (first_peak, full_peak)


@needs_parquet
def test_loading_the_plugin_does_not_import_pyarrow() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from pixmill.plugins import load_registry; "
        "cls = load_registry().get_store('parquet'); "
        "assert cls.suffix == '.parquet'; assert 'pyarrow' not in sys.modules, 'pyarrow was imported'"
    )
    env = {**os.environ, "PIXMILL_LOAD_PLUGINS": "parquet"}  # other plugins may import pyarrow themselves
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def _random_value(rng, depth: int = 0):
    kinds = ["none", "int", "float", "bool", "str", "bigint"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "none":
        return None
    if kind == "int":
        return rng.randint(-5, 5)
    if kind == "float":
        return rng.choice([0.5, -2.0, 3.0, 1e300, float("inf")])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "str":
        return rng.choice(["", "a", "é✓", "x y"])
    if kind == "bigint":
        return 2**64 + rng.randint(0, 9)
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice("abcd"): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


@needs_parquet
@pytest.mark.parametrize("seed", range(30))
def test_random_rows_roundtrip_exactly(tmp_path: Path, seed: int) -> None:
    """Rows of random shapes and types, in parts and in a stream of small row groups."""
    import random

    from pixmill_testing.store_contract import assert_rows_equal

    class SmallGroups(ParquetStore):
        row_group_size = 7

    rng = random.Random(seed)
    # Few keys and a bias towards one type per key, so that typed columns, JSON columns and schema
    # changes between row groups all occur.
    protos = {k: _random_value(rng) for k in "pqrs"}
    rows = [
        {k: (protos[k] if rng.random() < 0.7 else _random_value(rng)) for k in "pqrs" if rng.random() < 0.85}
        for _ in range(rng.randint(0, 60))
    ]
    store = SmallGroups()
    store.write_part(tmp_path / "part.parquet", rows)
    assert_rows_equal(list(store.read_part(tmp_path / "part.parquet")), rows)
    assert store.write_file(tmp_path / "export.parquet", iter(rows)) == len(rows)
    assert_rows_equal(list(store.read_part(tmp_path / "export.parquet")), rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.parquet", "part.parquet"]
