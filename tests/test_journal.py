"""The step journal: results kept between commits survive a kill; a torn last line and batches the
ledger already holds are left out on recovery."""

from __future__ import annotations

from pixmill.journal import Journal


def test_recover_returns_what_was_kept_less_committed_batches_and_a_torn_line(tmp_path):
    journal = Journal(tmp_path)
    journal.append(rows=[{"__id": "a", "x": 1}], done=["a"], positions=[0])
    journal.append(rows=[{"__id": "b", "x": 2}], done=["b"], positions=[1])
    journal.append(failed=[{"id": "c", "reason": "bad input", "row": {"__id": "c"}}])
    journal.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"rows": [{"__id": "d"}], "done": ["d"], "fail')  # killed mid-write
    kept = Journal(tmp_path).recover(committed={"a"})  # "a" reached the ledger before the kill
    assert kept["rows"] == [{"__id": "b", "x": 2}] and kept["done"] == ["b"] and kept["positions"] == [1]
    assert [f["id"] for f in kept["failed"]] == ["c"]


def test_clear_empties_it_and_close_removes_an_empty_file(tmp_path):
    journal = Journal(tmp_path)
    journal.append(rows=[{"__id": "a"}], done=["a"])
    journal.clear()
    journal.append(rows=[{"__id": "b"}], done=["b"])
    assert Journal(tmp_path).recover()["done"] == ["b"]
    journal.clear()
    journal.close()
    assert not (tmp_path / "journal.jsonl").exists()
    assert Journal(tmp_path).recover() == {"rows": [], "done": [], "failed": []}
