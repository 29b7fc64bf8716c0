"""The contract every :class:`pixmill.Store` passes, as a reusable pytest suite.

Usage, in a store plugin's tests::

    from pixmill_testing import StoreContract

    class TestMyStore(StoreContract):
        store_class = MyStore

A store whose files hold one record per text line (like JSONL) also passes the checks on malformed
lines and ``on_bad_line``::

    from pixmill_testing import LineStoreContract

    class TestMyLineStore(LineStoreContract):
        store_class = MyLineStore

Override :meth:`StoreContract.make_store` when the store needs constructor arguments, and set
``check_registered = False`` to test a store before its plugin is installed.

The rule on keys and ``None``: rows come back with exactly the keys they were written with. A key
written as ``None`` comes back as ``None``; a key a row lacks (while other rows in the same part have
it) stays missing, at the top level and inside nested dicts alike. Values keep their Python types:
``7`` stays an int and ``7.0`` a float, ``True`` stays a bool, lists stay lists, and no numpy or
pyarrow objects leak out.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pixmill.errors import InputError
from pixmill.store import Store

PLAIN_TYPES = (dict, list, str, int, float, bool, type(None))

DATAFLOW_ROWS = [
    {"conversations": [{"role": "user", "content": "a red fox in the snow"}], "images": ["a.png", "b.png"]},
    {
        "conversations": [
            {"role": "user", "content": "put the hat on the cat"},
            {"role": "assistant", "content": "done"},
        ],
        "images": ["c.png"],
    },
]


def assert_plain(value: Any, path: str = "row") -> None:
    """Fail unless ``value`` is built only of dict, list, str, int, float, bool and None."""
    assert type(value) in PLAIN_TYPES, f"{path} is a {type(value).__module__}.{type(value).__name__}, not a plain type"
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, f"{path} has a key {key!r} of type {type(key).__name__}"
            assert_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{path}[{i}]")


def _diff(actual: Any, expected: Any, path: str) -> str | None:
    """Where ``actual`` differs from ``expected``, types included (``1 == 1.0 == True`` in Python)."""
    if type(actual) is not type(expected):
        return f"{path}: got {actual!r} ({type(actual).__name__}), wrote {expected!r} ({type(expected).__name__})"
    if isinstance(expected, dict):
        if list(actual) != list(expected) and set(actual) != set(expected):
            extra, lost = sorted(set(actual) - set(expected)), sorted(set(expected) - set(actual))
            return f"{path}: keys differ (came back but not written: {extra}; written but lost: {lost})"
        for key in expected:
            found = _diff(actual[key], expected[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if len(actual) != len(expected):
            return f"{path}: got {len(actual)} items, wrote {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            found = _diff(a, e, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(expected, float) and math.isnan(expected) and math.isnan(actual):
        return None
    return None if actual == expected else f"{path}: got {actual!r}, wrote {expected!r}"


def assert_rows_equal(actual: list[dict], expected: list[dict]) -> None:
    """Fail, naming the first difference, unless the rows are equal with the same Python types."""
    assert len(actual) == len(expected), f"read {len(actual)} rows, wrote {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        found = _diff(a, e, f"row {i}")
        assert found is None, found


class StoreContract:
    """What every store must do; subclass it with ``store_class = MyStore`` (module docstring)."""

    store_class: ClassVar[type[Store]]
    check_registered: ClassVar[bool] = True

    def make_store(self) -> Store:
        """A store to test; override when the store needs arguments."""
        return self.store_class()

    @pytest.fixture
    def store(self) -> Store:
        return self.make_store()

    @pytest.fixture
    def part(self, tmp_path: Path, store: Store) -> Path:
        return tmp_path / f"part-000000{store.suffix}"

    def roundtrip(self, store: Store, path: Path, rows: list[dict]) -> list[dict]:
        """Write ``rows`` as a part, read them back, and check they are equal, types included."""
        store.write_part(path, rows)
        back = list(store.read_part(path))
        assert_rows_equal(back, rows)
        for row in back:
            assert_plain(row)
        return back

    # -- identity -------------------------------------------------------------------------------
    def test_name_and_suffix(self, store: Store) -> None:
        assert isinstance(store.name, str) and store.name, "set the class attribute `name`"
        assert store.suffix.startswith(".") and len(store.suffix) > 1, f"suffix {store.suffix!r} must look like '.ext'"

    def test_registered_through_plugins(self, store: Store) -> None:
        if not self.check_registered:
            pytest.skip("check_registered = False")
        from pixmill.plugins import load_registry

        assert load_registry().get_store(store.name) is self.store_class

    # -- values round-trip ----------------------------------------------------------------------
    def test_dataflow_rows_roundtrip(self, store: Store, part: Path) -> None:
        self.roundtrip(store, part, DATAFLOW_ROWS)

    def test_nested_values_roundtrip(self, store: Store, part: Path) -> None:
        rows = [
            {"id": "r0", "meta": {"serving": "flux", "size": [1024, 768], "gen": {"seed": 1, "steps": 28}},
             "tags": ["a", "b"], "grid": [[1, 2], [3]], "shots": [{"p": "x", "w": 0.5}]},
            {"id": "r1", "meta": {"serving": "flux", "size": [512, 512], "gen": {"seed": 2, "steps": 4}},
             "tags": [], "grid": [], "shots": []},
        ]
        self.roundtrip(store, part, rows)

    def test_unicode_roundtrip(self, store: Store, part: Path) -> None:
        rows = [
            {"prompt": "un chat roux, 猫, кошка, قطة, 🐈‍⬛ and é (e + \u0301)", "ключ": "значение"},
            {"prompt": 'quotes " \' \\ tab\t newline\n cr\r nul\x00 ls\u2028 ps\u2029 end', "ключ": ""},
        ]
        self.roundtrip(store, part, rows)

    def test_none_values_roundtrip(self, store: Store, part: Path) -> None:
        rows = [
            {"a": None, "b": 1, "c": [None, "x"], "d": {"seed": None, "model": "m"}},
            {"a": None, "b": None, "c": None, "d": None},
            {"a": "set", "b": 2, "c": ["y", None], "d": {"seed": 3, "model": None}},
        ]
        self.roundtrip(store, part, rows)

    def test_ints_and_floats_keep_their_type(self, store: Store, part: Path) -> None:
        rows = [
            {"n": 7, "x": 7.0, "score": 7, "vals": [1, 2], "big": 2**63 + 5, "neg": -(2**63)},
            {"n": -1, "x": 0.1, "score": 7.5, "vals": [1.5, 2], "big": 1, "neg": 0},
            {"n": 0, "x": 1e-300, "score": 8, "vals": [], "big": 2**64 - 1, "neg": -5},
            {"n": 2**62, "x": 1.7976931348623157e308, "score": -0.0, "vals": [3], "big": 0, "neg": -1},
        ]
        self.roundtrip(store, part, rows)

    def test_booleans_stay_booleans(self, store: Store, part: Path) -> None:
        rows = [
            {"ok": True, "flags": [True, False], "mixed": True, "fmix": 1.5},
            {"ok": False, "flags": [], "mixed": 1, "fmix": True},
            {"ok": True, "flags": [False], "mixed": 0, "fmix": 0.0},
        ]
        self.roundtrip(store, part, rows)

    def test_empty_values_roundtrip(self, store: Store, part: Path) -> None:
        rows = [
            {"s": "", "l": [], "d": {}, "ll": [[]], "ld": [{}], "nested": {"l": [], "s": ""}},
            {"s": "", "l": [], "d": {}, "ll": [[], []], "ld": [], "nested": {"l": [], "s": ""}},
        ]
        self.roundtrip(store, part, rows)

    def test_values_are_plain_python(self, store: Store, part: Path) -> None:
        rows = [{"i": 1, "f": 1.5, "s": "x", "b": True, "l": [1, 2], "d": {"k": [{"v": 2.5}]}, "n": None}] * 3
        for row in self.roundtrip(store, part, rows):
            assert_plain(row)

    def test_writing_leaves_the_rows_unchanged(self, store: Store, part: Path) -> None:
        rows = [{"a": 1, "n": {"x": [1, 2]}}, {"b": None, "n": {"y": "z"}}]
        before = copy.deepcopy(rows)
        store.write_part(part, rows)
        store.write_file(part, iter(rows))
        assert_rows_equal(rows, before)

    # -- keys -----------------------------------------------------------------------------------
    def test_rows_keep_exactly_their_keys(self, store: Store, part: Path) -> None:
        """Missing keys stay missing; keys written as None come back as None."""
        rows = [
            {"id": "0", "prompt": "a", "score": 7},
            {"id": "1", "prompt": None},
            {"id": "2", "image": "x.png"},
            {},
            {"id": "4", "prompt": "b", "score": None, "image": None},
        ]
        self.roundtrip(store, part, rows)

    def test_nested_dicts_keep_exactly_their_keys(self, store: Store, part: Path) -> None:
        rows = [
            {"scores": {"overall": 7}, "turns": [{"role": "user", "content": "a"}]},
            {"scores": {"overall": 5, "aesthetic": 6}, "turns": [{"role": "assistant", "content": "b", "images": ["i.png"]}]},
            {"scores": {}, "turns": [{"role": "user"}, {"content": None}]},
        ]
        self.roundtrip(store, part, rows)

    def test_one_key_with_values_of_many_types(self, store: Store, part: Path) -> None:
        rows = [{"v": "text"}, {"v": {"a": 1}}, {"v": [1, "two"]}, {"v": 3}, {"v": 2.5}, {"v": True}, {"v": None}]
        self.roundtrip(store, part, rows)

    # -- parts ----------------------------------------------------------------------------------
    def test_empty_part_roundtrips(self, store: Store, part: Path) -> None:
        store.write_part(part, [])
        assert part.exists(), "an empty part is still written, so the next step can read it"
        assert list(store.read_part(part)) == []

    def test_row_order_is_kept(self, store: Store, part: Path) -> None:
        rows = [{"id": f"r{i}", "n": i} for i in range(5000)]
        self.roundtrip(store, part, rows)

    def test_overwrite_replaces_a_part(self, store: Store, part: Path) -> None:
        store.write_part(part, [{"v": 1}, {"v": 2}])
        self.roundtrip(store, part, [{"w": "new"}])

    def test_write_leaves_only_the_final_file(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / f"out{store.suffix}"
        store.write_part(path, DATAFLOW_ROWS)
        store.write_file(path, iter(DATAFLOW_ROWS))
        assert sorted(os.listdir(tmp_path)) == [path.name], "temp files were left behind"

    def test_final_file_appears_only_when_complete(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / f"out{store.suffix}"

        def rows() -> Iterator[dict]:
            for i in range(1000):
                # A reader polling for `path` must never see a half-written file.
                assert not path.exists(), f"{path.name} exists after {i} of 1000 rows"
                yield {"i": i}

        assert store.write_file(path, rows()) == 1000
        assert len(list(store.read_part(path))) == 1000

    def test_failed_write_keeps_the_previous_file(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / f"out{store.suffix}"
        store.write_part(path, [{"v": "old"}])

        def rows() -> Iterator[dict]:
            for i in range(100):
                # While the new file is being written, the old one reads whole.
                assert list(store.read_part(path)) == [{"v": "old"}]
                yield {"v": i}
            raise RuntimeError("the producer failed")

        with pytest.raises(RuntimeError, match="the producer failed"):
            store.write_file(path, rows())
        assert list(store.read_part(path)) == [{"v": "old"}]
        assert sorted(os.listdir(tmp_path)) == [path.name], "a failed write left temp files behind"

    # -- streams --------------------------------------------------------------------------------
    def test_read_part_streams(self, store: Store, part: Path) -> None:
        store.write_part(part, [{"i": i} for i in range(10)])
        it = store.read_part(part)
        assert isinstance(it, Iterator) and not isinstance(it, (list, tuple)), "read_part must return an iterator"
        assert next(it) == {"i": 0}
        assert sum(1 for _ in it) == 9

    def test_write_file_from_a_generator_returns_the_count(self, store: Store, part: Path) -> None:
        expected = [{"id": str(i), "prompt": f"p{i}", "images": [f"{i}.png"]} for i in range(300)]
        assert store.write_file(part, (dict(r) for r in expected)) == 300
        assert_rows_equal(list(store.read_part(part)), expected)

    def test_write_file_accepts_file_metadata(self, store: Store, part: Path) -> None:
        """Formats without file metadata ignore it; the rows are the same either way."""
        assert store.write_file(part, iter(DATAFLOW_ROWS), metadata={"pixmill-test": "1"}) == len(DATAFLOW_ROWS)
        assert_rows_equal(list(store.read_part(part)), DATAFLOW_ROWS)

    def test_write_file_of_nothing(self, store: Store, part: Path) -> None:
        assert store.write_file(part, iter(())) == 0
        assert list(store.read_part(part)) == []

    def test_write_file_of_a_stream_that_changes_shape(self, store: Store, part: Path) -> None:
        """Long exports cross any internal chunking; later rows may add keys or change types."""
        def row(i: int) -> dict:
            if i < 60_000:
                return {"id": i, "note": None}
            if i < 100_000:
                return {"id": i, "note": "n", "extra": [i]}
            return {"id": float(i), "meta": {"k": i}}

        n = 120_000
        assert store.write_file(part, (row(i) for i in range(n))) == n
        count = 0
        for i, got in enumerate(store.read_part(part)):
            found = _diff(got, row(i), f"row {i}")
            assert found is None, found
            count += 1
        assert count == n

    # -- errors ---------------------------------------------------------------------------------
    def test_unreadable_file_raises_input_error(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / f"broken{store.suffix}"
        path.write_bytes(b"this is not a valid file {\x01\x02\n")
        with pytest.raises(InputError) as info:
            list(store.read_part(path))
        assert str(path) in str(info.value), "the error must name the file"


class LineStoreContract(StoreContract):
    """:class:`StoreContract` plus the checks for stores with one record per text line."""

    def _with_bad_line(self, store: Store, path: Path, bad: str) -> None:
        store.write_part(path, [{"i": 0}, {"i": 1}, {"i": 2}])
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3, "a line-oriented store writes one line per row"
        path.write_text("\n".join([lines[0], bad, *lines[1:]]) + "\n", encoding="utf-8")

    @pytest.mark.parametrize("bad", ['{"i": 9', "[1, 2]", "not json at all"])
    def test_malformed_line_names_file_and_line(self, store: Store, part: Path, bad: str) -> None:
        self._with_bad_line(store, part, bad)
        with pytest.raises(InputError) as info:
            list(store.read_part(part))
        assert f"{part}:2" in str(info.value)

    def test_on_bad_line_skips_and_reports(self, store: Store, part: Path) -> None:
        self._with_bad_line(store, part, '{"i": 9')
        seen: list[tuple[int, str, str]] = []
        rows = list(store.read_part(part, on_bad_line=lambda n, raw, msg: seen.append((n, raw, msg))))
        assert rows == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert [(n, raw) for n, raw, _ in seen] == [(2, '{"i": 9')]
        assert seen[0][2], "the handler gets the reason"

    def test_blank_lines_are_skipped(self, store: Store, part: Path) -> None:
        self._with_bad_line(store, part, "   ")
        assert list(store.read_part(part)) == [{"i": 0}, {"i": 1}, {"i": 2}]
