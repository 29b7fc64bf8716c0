"""Errors of the machine are not the row's fault: a full disk while saving images stops the step at
the first one with a clear message, marks nothing failed, leaves no temporary files, and a rerun
once there is space redoes only what was lost (no committed row is paid for twice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pixmill_testing.openai_server import FakeOpenAIServer

PIXMILL = str(Path(sys.executable).with_name("pixmill"))


@pytest.fixture
def small_disk(tmp_path):
    """A real 160 KiB filesystem (tmpfs); skipped where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _ledger(step: Path) -> tuple[set[str], list]:
    """Rows the step kept: committed (ledger) or kept between commits (journal, committed first
    thing on the next run). A journal line the full disk cut short keeps nothing: the next run
    ignores it, as here."""
    done, failed = set(), []
    for name in ("ledger.jsonl", "journal.jsonl"):
        path = step / name
        for line in (path.read_text().splitlines() if path.exists() else []):
            try:
                entry = json.loads(line)
            except ValueError:
                if name == "ledger.jsonl":
                    raise
                break  # the torn last line of the journal
            done.update(entry["done"])
            failed.extend(entry["failed"])
    return done, failed


def test_full_disk_stops_the_step_marks_nothing_failed_and_resumes(tmp_path, small_disk):
    n = 80
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i:02d}", "prompt": f"disk {i:02d}"}) + "\n" for i in range(n)))
    out = small_disk / "run"
    with FakeOpenAIServer(max_image_side=512) as server:
        cmd = [PIXMILL, "run", "-q", "-i", str(inp), "-o", str(out), "generate-images", "--serving", "openai-images",
               "--base-url", server.url, "--api-key", "sk-disk", "--size", "512x512", "--concurrency", "2"]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        calls_first = len(server.requests)
        assert first.returncode == 1, first.stderr
        error = first.stderr.strip().splitlines()
        assert len(error) == 1 and "No space left on device" in error[0] and "nothing was marked failed" in error[0]
        step = out / "01-generate-images"
        done, failed = _ledger(step)
        assert not failed and not (step / "failed.jsonl").exists()
        assert 0 < len(done) < n
        assert calls_first <= len(done) + 4, "the step must stop at the first write error, not call on"
        assert not list(step.rglob("*.tmp")), "no temporary file may stay behind"

        subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        again = [r.prompt for r in server.requests[calls_first:]]
    redone = {p for p in again} & {f"disk {rid[1:]}" for rid in done}
    assert not redone, f"committed rows paid for again: {sorted(redone)}"
    done_after, failed_after = _ledger(step)
    assert len(done_after) == n and not failed_after
