"""Test helpers: real input files, real plugin distributions on sys.path, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# The harness's own readers and writers (pixmill-testing), shared by this suite's modules.
from pixmill_testing import read_jsonl, step_rows, write_jsonl  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
PIXMILL = [sys.executable, "-m", "pixmill"]


def make_plugin(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """Install a plugin distribution the way pip lays it out (a module plus a .dist-info folder
    with an entry point in the `pixmill` group) under ``root``; put ``root`` on PYTHONPATH to use it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[pixmill]\n{entry_name or module} = {module}\n", encoding="utf-8")
    return root


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, pythonpath: list[Path] | None = None,
            check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `pixmill` CLI in a subprocess (as a user would)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIXMILL_")}
    full_env = {**base, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), full_env.get("PYTHONPATH", "")])
    proc = subprocess.run([*PIXMILL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pixmill {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


