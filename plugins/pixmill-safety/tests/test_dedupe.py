"""dedupe-images: resized, re-encoded and brightened copies dropped with the id of their original,
no original dropped; the same result on rerun, after a kill mid-step, and as all-pairs comparison."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pixmill.errors import ConfigError
from pixmill.pipeline import StepSpec
from pixmill.run import FILTERED, Run
from pixmill_safety.hash_index import HammingIndex, all_pairs_nearest
from pixmill_safety.samples import near_copies, scene
from pixmill_testing import read_jsonl, write_jsonl


def _dataset(folder: Path, n_originals: int = 12) -> tuple[list[dict], dict[str, str]]:
    """Originals, each followed later by its copies (shuffled in deterministically); returns rows
    and {copy row id: original row id}."""
    rows, expected, pending = [], {}, []
    for s in range(n_originals):
        img = scene(s)
        img.save(folder / f"orig-{s}.png")
        rows.append({"id": f"o{s}", "images": [f"orig-{s}.png"]})
        for kind, name in near_copies(img, folder, f"orig-{s}").items():
            pending.append({"id": f"o{s}-{kind}", "images": [name]})
            expected[f"o{s}-{kind}"] = f"o{s}"
        if s % 3 == 2:  # copies arrive a few originals later, some in the same batch, some not
            rows.extend(pending)
            pending = []
    rows.extend(pending)
    (folder / "exact.png").write_bytes((folder / "orig-0.png").read_bytes())
    rows.append({"id": "exact-of-o0", "images": ["exact.png"]})
    expected["exact-of-o0"] = "o0"
    return rows, expected


def test_copies_are_marked_with_their_original_and_no_original_is_touched(tmp_path, pixmill_run):
    rows, expected = _dataset(tmp_path)
    out = pixmill_run(rows, [StepSpec("dedupe-images", {"batch_size": 7})]).rows
    marks = {r["id"]: r["duplicate_of"] for r in out}
    assert {k: v for k, v in marks.items() if v is not None} == expected
    assert all(marks[f"o{s}"] is None for s in range(12))
    assert next(r for r in out if r["id"] == "exact-of-o0")["duplicate_distance"] == 0
    assert all(len(r["image_hashes"]["phash"]) == 16 for r in out)


def test_drop_records_every_dropped_row_with_its_original(tmp_path, pixmill_run):
    rows, expected = _dataset(tmp_path)
    run = pixmill_run(rows, [StepSpec("dedupe-images", {"drop": True})])
    out, folder = run.rows, run.folder
    assert [r["id"] for r in out] == [f"o{s}" for s in range(12)]
    dropped = {d["id"]: d for d in read_jsonl(folder / "dropped.jsonl")}
    assert {k: d["duplicate_of"] for k, d in dropped.items()} == expected
    assert "same file bytes" in dropped["exact-of-o0"]["reason"]
    shown = {v.row["id"]: v for v in Run(tmp_path / "run").statuses() if v.status == FILTERED}
    assert set(shown) == set(expected) and shown["o3-jpeg70"].row["duplicate_of"] == "o3"
    assert "duplicate of row o3" in shown["o3-jpeg70"].reason


def test_batch_size_and_rerun_do_not_change_the_result(tmp_path, pixmill_run):
    rows, _ = _dataset(tmp_path)
    first = pixmill_run(rows, [StepSpec("dedupe-images", {"batch_size": 1})], name="one").rows
    big = pixmill_run(rows, [StepSpec("dedupe-images", {"batch_size": 1000})], name="big").rows
    again = pixmill_run(rows, [StepSpec("dedupe-images", {"batch_size": 1})], name="one").rows
    assert first == big == again


def test_max_distance_zero_keeps_near_copies_and_bad_rows_fail_alone(tmp_path, pixmill_run):
    rows, _ = _dataset(tmp_path, n_originals=3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    rows += [{"id": "broken", "images": ["broken.png"]}, {"id": "gone", "images": ["nope.png"]}]
    run = pixmill_run(rows, [StepSpec("dedupe-images", {"max_distance": 0})])
    out, folder = run.rows, run.folder
    marked = {r["id"]: r["duplicate_distance"] for r in out if r["duplicate_of"]}
    assert "exact-of-o0" in marked and set(marked.values()) == {0}
    assert len(marked) < 10  # some copies differ by a bit or more: kept at distance 0
    reasons = {f["id"]: f["reason"] for f in read_jsonl(folder / "failed.jsonl")}
    assert "'broken.png'" in reasons["broken"] and "not found" in reasons["gone"]
    with pytest.raises(ConfigError, match="max-distance"):
        pixmill_run(rows, [StepSpec("dedupe-images", {"max_distance": 40})], name="bad")


def test_index_agrees_with_all_pairs_on_random_codes():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, size=400, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 400, dtype=np.uint64)
    noisy = base[rng.integers(0, 400, 600)] ^ (np.uint64(1) << rng.integers(0, 64, 600).astype(np.uint64))
    codes = np.concatenate([base, noisy, base[:50]])
    rng.shuffle(codes)
    for d in (0, 3, 6, 9):
        want_pos, want_dist = all_pairs_nearest(codes, d)
        index, got = HammingIndex(d), []
        kept_pos: list[int] = []
        for j, code in enumerate(codes):  # one at a time, as a batch of one
            pos, dist = index.nearest(np.array([code], dtype=np.uint64))
            if pos[0] >= 0:
                got.append((kept_pos[pos[0]], int(dist[0])))
            else:
                got.append((-1, -1))
                index.add(np.array([code], dtype=np.uint64))
                kept_pos.append(j)
        assert got == list(zip(want_pos.tolist(), want_dist.tolist(), strict=True)), d


KILL_SCRIPT = """
import sys, time
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
import pixmill_safety.dedupe as dd
slow = dd.DedupeImages.process
def process(self, rows, ctx):
    time.sleep(0.3)  # slow batches, so the kill lands mid-step
    return slow(self, rows, ctx)
dd.DedupeImages.process = process
run_pipeline(PipelineSpec(steps=[StepSpec("dedupe-images", {"batch_size": 3, "drop": True})],
                          input=sys.argv[1], out=sys.argv[2]))
"""


def test_kill_mid_step_then_rerun_gives_the_same_dataset(tmp_path, pixmill_run):
    rows, expected = _dataset(tmp_path)
    inp = write_jsonl(tmp_path / "killed.jsonl", rows)
    script = tmp_path / "slow_run.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(inp), str(tmp_path / "killed")], env=env)
    ledger = tmp_path / "killed" / "01-dedupe-images" / "ledger.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not ledger.exists() or len(ledger.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(ledger.read_text().splitlines()) < 14  # it really stopped mid-step
    run = pixmill_run(rows, [StepSpec("dedupe-images", {"batch_size": 3, "drop": True})], name="killed")
    out, folder = run.rows, run.folder
    fresh = pixmill_run(rows, [StepSpec("dedupe-images", {"batch_size": 3, "drop": True})], name="fresh").rows
    assert out == fresh
    assert {d["id"]: d["duplicate_of"] for d in read_jsonl(folder / "dropped.jsonl")} == expected
