"""kill -9 in the middle of a 200-prompt run, then rerun: exactly 200 images, none made twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _committed(step: Path, h) -> list[dict]:
    from pixmill import Run

    return list(Run(step.parent).rows(step=int(step.name[:2])))


def _pixmill(*args: str) -> list[str]:
    return [sys.executable, "-c", "from pixmill.cli import main; main()", *args]


def test_kill_9_then_rerun_makes_exactly_200_images(tmp_path: Path, models, h):
    inp = h.write_rows(tmp_path / "prompts.jsonl", [{"prompt": f"a photo of thing {i}"} for i in range(200)])
    out = tmp_path / "run"
    cmd = _pixmill("run", "-q", "-i", str(inp), "-o", str(out), "generate-images", "--serving", "flux",
                   "--model", str(models["flux"]), "--width", "32", "--height", "32", "--steps", "1",
                   "--batch-size", "4", "--max-sequence-length", "16")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    step = out / "01-generate-images"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if step.exists() and len(_committed(step, h)) >= 40:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _committed(step, h)
    assert 40 <= len(before) < 200
    mtimes = {r["images"][0]: (out / r["images"][0]).stat().st_mtime_ns for r in before}

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _committed(step, h)
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200
    images = sorted((step / "images").glob("*.png"))
    assert len(images) == 200 and len({r["images"][0] for r in rows}) == 200
    assert all((out / r["images"][0]).is_file() for r in rows)
    # Rows committed before the kill were not generated again: their files are untouched.
    assert all((out / p).stat().st_mtime_ns == t for p, t in mtimes.items())
