"""Ctrl-C with one worker process per device: the terminal's SIGINT reaches every process of the
group; workers ignore it, the driver stops handing out batches, commits what finishes, stops the
workers and exits with 130 and the documented message. (Resuming is the runner's, tested elsewhere.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PIXMILL = str(Path(sys.executable).with_name("pixmill"))
MESSAGE = "Interrupted: committed work is kept; rerun the same command to resume."


def _ledger(step: Path) -> tuple[set[str], list]:
    done, failed = set(), []
    ledger = step / "ledger.jsonl"
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        entry = json.loads(line)
        done.update(entry["done"])
        failed.extend(entry["failed"])
    return done, failed


def _session_processes(sid: int) -> list[str]:
    ps = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(sid)], capture_output=True, text=True).stdout
    return [line.strip() for line in ps.splitlines() if line.strip()]


@pytest.mark.slow
def test_ctrl_c_on_the_process_group_with_two_cpu_workers(tmp_path: Path, models, h):
    n = 30
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i:03d}", "prompt": f"prompt {i}"}) + "\n" for i in range(n)))
    out = tmp_path / "run"
    cmd = [PIXMILL, "run", "-q", "-i", str(inp), "-o", str(out), "generate-images", "--serving", "flux",
           "--model", str(models["flux"]), "--width", "32", "--height", "32", "--steps", "2", "--devices", "cpu,cpu",
           "--batch-size", "1"]  # one row per batch: the interrupt lands with most batches still to start
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PIXMILL_INTERRUPT_GRACE": "20"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    step = out / "01-generate-images"
    deadline = time.monotonic() + 120
    while len(h.kept(out, 1)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: every process of the group
    _, err = proc.communicate(timeout=60)
    done, failed = _ledger(step)
    assert proc.returncode == 130, err
    assert err.strip().endswith(MESSAGE)
    assert not failed, "an interrupt must not fail the batches the workers were running"
    assert 2 <= len(done) < n
    deadline = time.monotonic() + 10  # (multiprocessing's resource tracker exits on its own, soon after)
    while (leftover := _session_processes(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftover, f"no worker process may outlive the run: {leftover}"
