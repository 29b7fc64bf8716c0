"""Ctrl-C during HTTP work: no new request after the interrupt, results that arrive are committed,
in-flight requests are cancelled after the grace period (at once on a second Ctrl-C), and the CLI
says what happened and exits with 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pixmill_testing.openai_server import FakeOpenAIServer

PIXMILL = str(Path(sys.executable).with_name("pixmill"))
MESSAGE = "Interrupted: committed work is kept; rerun the same command to resume."


def _prompts(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i:02d}", "prompt": f"ctrlc {i:02d}"}) + "\n" for i in range(n)))
    return path


def _committed(step: Path) -> set[str]:
    ids: set[str] = set()
    ledger = step / "ledger.jsonl"
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        ids.update(json.loads(line)["done"])
    return ids


def _failed_ids(step: Path) -> set[str]:
    ids: set[str] = set()
    ledger = step / "ledger.jsonl"
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        ids.update(f["id"] for f in json.loads(line)["failed"])
    return ids


def _start(tmp_path: Path, server: FakeOpenAIServer, n: int, grace: float, concurrency: int = 4):
    out = tmp_path / "run"
    cmd = [PIXMILL, "run", "-q", "-i", str(_prompts(tmp_path, n)), "-o", str(out), "generate-images",
           "--serving", "openai-images", "--base-url", server.url, "--api-key", "sk-ctrlc",
           "--concurrency", str(concurrency)]
    env = {**os.environ, "PIXMILL_INTERRUPT_GRACE": str(grace)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while len(server.requests) < concurrency and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.requests) == concurrency, "every request slot must be busy before the interrupt"
    return proc, cmd, env, out / "01-generate-images"


def test_ctrl_c_commits_what_arrives_and_starts_nothing_new(tmp_path):
    n, concurrency = 20, 4
    with FakeOpenAIServer(latency=1.5) as server:
        proc, cmd, env, step = _start(tmp_path, server, n, grace=20, concurrency=concurrency)
        interrupted_at = time.time()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.time() - interrupted_at
        started_after = [r for r in server.requests if r.started > interrupted_at]
        assert proc.returncode == 130, err
        assert err.strip().endswith(MESSAGE)
        assert "Aborted" not in err
        assert not started_after, "no request may start after Ctrl-C"
        assert took < 5, f"exiting took {took:.1f}s though the requests in flight ended within 1.5s"
        # The answers that arrived during the grace period were committed, none marked failed.
        assert len(_committed(step)) == concurrency and not _failed_ids(step)
        info = json.loads((step / "step.json").read_text())
        assert info["complete"] is False

        before = len(server.requests)
        rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        again = {r.prompt for r in server.requests[before:]}
    assert len(again) == n - concurrency  # only the rows never answered were requested again
    assert len(_committed(step)) == n


@pytest.mark.parametrize("grace,presses", [(1, 1), (60, 2)], ids=["grace-period-ends", "second-ctrl-c"])
def test_in_flight_requests_are_cancelled_after_the_grace_period_or_a_second_ctrl_c(tmp_path, grace, presses):
    with FakeOpenAIServer(latency=30) as server:
        proc, _, _, step = _start(tmp_path, server, 8, grace=grace)
        for _ in range(presses - 1):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=25)
        took = time.monotonic() - interrupted_at
    assert proc.returncode == 130 and err.strip().endswith(MESSAGE)
    assert took < 6, f"the run took {took:.1f}s to stop (grace {grace}s, {presses} Ctrl-C)"
    assert not _committed(step) and not _failed_ids(step)  # cancelled work is neither done nor failed
