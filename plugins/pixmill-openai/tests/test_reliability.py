"""Throughput and resilience through the runner: concurrency, fault rates, permanent errors,
timeouts, and a run killed with SIGKILL then resumed without repeating committed requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pixmill import Run
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill_testing import step_rows
from pixmill_testing.openai_server import FakeOpenAIServer, FaultRule

PIXMILL = str(Path(sys.executable).with_name("pixmill"))


def prompts_file(tmp_path: Path, n: int, word: str = "row") -> Path:
    path = tmp_path / f"{word}.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i:03d}", "prompt": f"{word} {i:03d}"}) + "\n" for i in range(n)))
    return path


def generate(tmp_path, server, input_path, out="run", **opts):
    spec = PipelineSpec(steps=[StepSpec("generate-images", {"serving": "openai-images", "base_url": server.url,
                                                            "api_key": "sk-test", **opts})],
                        input=input_path, out=tmp_path / out)
    return run_pipeline(spec)[-1]


def run_and_kill(server: FakeOpenAIServer, input_path: Path, out: Path, concurrency: int, until) -> list[str]:
    """Start ``pixmill run ... generate-images`` against ``server`` and kill -9 it once ``until()``
    holds; returns the command, to run it again."""
    cmd = [PIXMILL, "run", "-q", "-i", str(input_path), "-o", str(out), "generate-images",
           "--serving", "openai-images", "--base-url", server.url, "--api-key", "sk-kill",
           "--concurrency", str(concurrency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not until() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return cmd


def committed_ids(step_dir: Path) -> set[str]:
    """Row ids in complete ledger lines (what a crash cannot take back)."""
    ids: set[str] = set()
    ledger = step_dir / "ledger.jsonl"
    if not ledger.exists():
        return ids
    for line in ledger.read_text().splitlines():
        try:
            ids.update(json.loads(line)["done"])
        except (json.JSONDecodeError, KeyError):
            break  # a torn last line
    return ids


def test_concurrency_through_the_runner(tmp_path):
    with FakeOpenAIServer(latency=0.1) as server:
        result = generate(tmp_path, server, prompts_file(tmp_path, 32), concurrency=8)
        requests = list(server.requests)
    assert result.done == 32
    ideal, sequential = 32 * 0.1 / 8, 32 * 0.1
    span = max(r.finished for r in requests) - min(r.started for r in requests)
    assert span < ideal * 2.5, f"requests took {span:.2f}s for an ideal of {ideal:.2f}s"
    assert result.seconds < sequential / 2  # the whole step, client start-up included
    events = sorted([(r.started, 1) for r in requests] + [(r.finished, -1) for r in requests])
    live = peak = 0
    for _, d in events:
        live += d
        peak = max(peak, live)
    assert peak == 8  # the runner keeps every slot busy, and never more


def test_fault_rates_every_row_completes_once(tmp_path):
    with FakeOpenAIServer(latency=0.005, fault_rates={"500": 0.10, "429": 0.05}, seed=3, retry_after=0.01) as server:
        result = generate(tmp_path, server, prompts_file(tmp_path, 120), concurrency=8, max_retries=8)
        requests = list(server.requests)
    faults = Counter(r.fault for r in requests)
    assert faults["500"] > 0 and faults["429"] > 0  # the faults really happened
    assert (result.done, result.failed) == (120, 0)
    ok = Counter(r.prompt for r in requests if r.status == 200)
    assert len(ok) == 120 and set(ok.values()) == {1}  # every row answered once: none twice, none lost
    rows = step_rows(tmp_path / "run", 1)
    assert sorted(r["id"] for r in rows) == [f"r{i:03d}" for i in range(120)]


def test_permanent_errors_and_timeouts_fail_only_their_rows(tmp_path):
    rules = [FaultRule("refusal", match="row 003"), FaultRule("slow", match="row 007")]
    with FakeOpenAIServer(rules=rules, slow_seconds=3.0) as server:
        started = time.monotonic()
        result = generate(tmp_path, server, prompts_file(tmp_path, 10), concurrency=4, timeout=0.3, max_retries=1)
        elapsed = time.monotonic() - started
        refused_attempts = len(server.requests_for("row 003"))
        slow_attempts = len(server.requests_for("row 007"))
    assert (result.done, result.failed) == (8, 2)
    reasons = {f["id"]: f["reason"] for f in Run(tmp_path / "run").steps[1].failures()}
    assert reasons["r003"].startswith("HTTP 400") and "safety system" in reasons["r003"]
    assert "timed out" in reasons["r007"] and "2 attempts" in reasons["r007"]
    assert refused_attempts == 1 and slow_attempts == 2
    assert elapsed < 2.5  # the slow answers were abandoned, not waited for


def test_failed_rows_are_retried_on_request(tmp_path):
    with FakeOpenAIServer(rules=[FaultRule("refusal", match="row 001", times=1)]) as server:
        first = generate(tmp_path, server, prompts_file(tmp_path, 3))
        spec = PipelineSpec(steps=[StepSpec("generate-images", {"serving": "openai-images", "base_url": server.url,
                                                                "api_key": "k"})],
                            input=tmp_path / "row.jsonl", out=tmp_path / "run", retry_failed=True)
        second = run_pipeline(spec)[-1]
        attempts = Counter(r.prompt for r in server.requests)
    assert (first.done, first.failed) == (2, 1) and (second.done, second.failed) == (3, 0)
    assert attempts == {"row 000": 1, "row 001": 2, "row 002": 1}


def test_kill_9_then_rerun_repeats_no_committed_request(tmp_path):
    n, concurrency = 80, 4
    input_path = prompts_file(tmp_path, n, "kill")
    out = tmp_path / "killed"
    with FakeOpenAIServer(latency=0.1) as server:
        step = out / "01-generate-images"
        cmd = run_and_kill(server, input_path, out, concurrency, lambda: len(committed_ids(step)) >= 12)
        before = committed_ids(step)
        kill_index = len(server.requests)
        assert 12 <= len(before) < n, "the kill must land mid-run"
        time.sleep(0.2)  # let the server finish answering the dead client's last requests

        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        after = server.requests[kill_index:]

    by_prompt = {f"r{i:03d}": f"kill {i:03d}" for i in range(n)}
    repeated = {r.prompt for r in after} & {by_prompt[i] for i in before}
    assert not repeated, f"committed rows requested again: {sorted(repeated)}"
    redone = {r.prompt for r in after} & {r.prompt for r in server.requests[:kill_index]}
    assert len(redone) <= concurrency + 1  # at most the batches that were in flight
    rows = step_rows(out, 1)
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(by_prompt) and len(ids) == len(set(ids))  # every row exactly once
    for row in rows:
        assert (out / row["images"][0]).is_file()


def test_kill_9_at_high_concurrency_redoes_only_the_requests_in_flight(tmp_path):
    # Results are kept as they arrive (the step's journal), not per batch or per commit: after a
    # kill -9 half-way, the rerun sends at most one request per slot that was busy, plus the rows
    # the killed run never asked for.
    n, concurrency = 192, 32
    input_path = prompts_file(tmp_path, n, "half")
    out = tmp_path / "killed"
    with FakeOpenAIServer(latency=0.2) as server:
        cmd = run_and_kill(server, input_path, out, concurrency, lambda: len(server.requests) >= n // 2)
        time.sleep(0.3)  # the server finishes answering the dead client's last requests
        kill_index = len(server.requests)
        requested = {r.prompt for r in server.requests}
        assert n // 2 <= len(requested) < n, "the kill must land mid-run"

        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        after = server.requests[kill_index:]

    never_asked = n - len(requested)
    assert len(after) <= concurrency + never_asked, (len(after), never_asked)
    rows = step_rows(out, 1)
    ids = [r["id"] for r in rows]
    assert sorted(ids) == [f"r{i:03d}" for i in range(n)] and len(ids) == len(set(ids))  # every row exactly once
    for row in rows:
        assert (out / row["images"][0]).is_file()
    assert not (out / "01-generate-images" / "journal.jsonl").exists()
