"""kill -9 in the middle of a run, then rerun: exactly one image per row, none made twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pixmill_testing import write_jsonl


def _committed(step: Path, h) -> list[dict]:
    return h.kept(step.parent, int(step.name[:2]))


def _pixmill(*args: str) -> list[str]:
    return [sys.executable, "-c", "from pixmill.cli import main; main()", *args]


def test_kill_9_then_rerun_makes_exactly_200_images(tmp_path: Path, models, h):
    _kill_then_rerun(tmp_path, h, [{"prompt": f"a photo of thing {i}"} for i in range(200)],
                     ["generate-images", "--serving", "flux", "--model", str(models["flux"]), "--width", "32", "--height", "32",
                      "--steps", "1", "--batch-size", "4", "--max-sequence-length", "16"])


def test_kill_9_then_rerun_with_controlnet_and_ip_adapter(tmp_path: Path, models, addons, h):
    """The conditioned path resumes the same way: rows keep their control and reference images."""
    kinds = ("stripes", "square", "noise")
    files = [h.pattern(tmp_path / f"{k}.png", (32, 32), k) for k in kinds]
    rows = [{"prompt": f"a photo of thing {i}", "control_image": files[i % 3], "reference_images": files[(i + 1) % 3]}
            for i in range(48)]
    rows_done = _kill_then_rerun(tmp_path, h, rows, [
        "generate-images", "--serving", "diffusers", "--model", str(models["sd"]), "--controlnet", str(addons["sd-controlnet"]),
        "--ip-adapter", str(addons["sd-ip-adapter"]), "--ip-adapter-weight-name", "ip-adapter.safetensors",
        "--steps", "1", "--guidance", "1", "--batch-size", "4"], kill_at=12)
    assert all(r["images_meta"][0]["control_image"] == files[int(r["prompt"].split()[-1]) % 3] for r in rows_done)


def test_kill_9_then_rerun_makes_each_depth_map_once(tmp_path: Path, estimators, h):
    files = [h.pattern(tmp_path / f"{k}.png", (24, 16), k) for k in ("stripes", "square", "noise")]
    rows = [{"image": files[i % 3]} for i in range(1200)]  # several commits (one a second) before the end
    rows_done = _kill_then_rerun(tmp_path, h, rows, [
        "control-image", "--kind", "depth", "--model", str(estimators["depth"]), "--batch-size", "2"],
        kill_at=8, field="control_image")
    assert all(r["control_image_meta"]["source"] == [r["image"]] for r in rows_done)


def _kill_then_rerun(tmp_path: Path, h, rows: list[dict], step_args: list[str], kill_at: int = 40,
                     field: str = "images") -> list[dict]:
    """Run the rows through one step (``step_args``: the operator and its options), kill -9 once
    ``kill_at`` are committed, rerun: one image per row in ``field``, none made twice."""
    total = len(rows)
    inp = write_jsonl(tmp_path / "prompts.jsonl", rows)
    out = tmp_path / "run"
    cmd = _pixmill("run", "-q", "-i", str(inp), "-o", str(out), *step_args)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    step = out / f"01-{step_args[0]}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if step.exists() and len(_committed(step, h)) >= kill_at:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _committed(step, h)
    assert kill_at <= len(before) < total
    mtimes = {_first(r[field]): (out / _first(r[field])).stat().st_mtime_ns for r in before}

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _committed(step, h)
    assert len(rows) == total and len({r["id"] for r in rows}) == total
    images = sorted((step / "images").glob("*.png"))
    assert len(images) == total and len({_first(r[field]) for r in rows}) == total
    assert all((out / _first(r[field])).is_file() for r in rows)
    # Rows committed before the kill were not generated again: their files are untouched.
    assert all((out / p).stat().st_mtime_ns == t for p, t in mtimes.items())
    return rows


def _first(value: str | list[str]) -> str:
    return value[0] if isinstance(value, list) else value
