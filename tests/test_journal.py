"""The step journal: results kept between commits survive a kill; a torn last line and batches the
ledger already holds are left out on recovery."""

from __future__ import annotations

from pixmill.journal import Journal


def test_recover_returns_what_was_kept_less_committed_batches_and_a_torn_line(tmp_path):
    journal = Journal(tmp_path)
    journal.append([{"__id": "a", "x": 1}], ["a"], [])
    journal.append([{"__id": "b", "x": 2}], ["b"], [])
    journal.append([], [], [{"id": "c", "reason": "bad input", "row": {"__id": "c"}}])
    journal.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"rows": [{"__id": "d"}], "done": ["d"], "fail')  # killed mid-write
    rows, done, failed = Journal(tmp_path).recover(committed={"a"})  # "a" reached the ledger before the kill
    assert rows == [{"__id": "b", "x": 2}] and done == ["b"]
    assert [f["id"] for f in failed] == ["c"]


def test_clear_empties_it_and_close_removes_an_empty_file(tmp_path):
    journal = Journal(tmp_path)
    journal.append([{"__id": "a"}], ["a"], [])
    journal.clear()
    journal.append([{"__id": "b"}], ["b"], [])
    assert Journal(tmp_path).recover()[1] == ["b"]
    journal.clear()
    journal.close()
    assert not (tmp_path / "journal.jsonl").exists()
    assert Journal(tmp_path).recover() == ([], [], [])
