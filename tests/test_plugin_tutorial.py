"""The plugin of docs/writing-a-plugin.md, built and installed by pip like a user's, then used."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, read_jsonl, run_cli, step_rows, write_jsonl

PLUGIN = REPO / "docs" / "plugin-example" / "pixmill-wordcount"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / PLUGIN.name  # building writes build/ into the source tree
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    return target


def test_tutorial_plugin_is_discovered(installed):
    plugins = json.loads(run_cli("plugins", pythonpath=[installed], check=True).stdout)
    entry = next(p for p in plugins if p["distribution"] == "pixmill-wordcount")
    assert entry["registered"] == {"operators": ["word-count"], "servings": ["solid"]} and entry["error"] is None


def test_tutorial_operator_runs_with_failures_recorded(installed, tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a red fox in snow"}, {"prompt": "fox"}, {"other": 1}])
    proc = run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "word-count", "--min-words", "2",
                   pythonpath=[installed])
    assert proc.returncode == 3 and "2 rows failed" in proc.stderr  # finished, with failed rows
    rows = step_rows(tmp_path / "run", 1)
    assert [(r["id"], r["words"]) for r in rows] == [("0", 5)]
    status = json.loads(run_cli("status", str(tmp_path / "run"), "--json", pythonpath=[installed], check=True).stdout)
    assert {f["reason"] for f in status[-1]["failures"]} == {"only 1 words", "no text in 'prompt'"}


def test_tutorial_serving_drives_generate_images(installed, tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a blue square"}])
    run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "generate-images", "--serving", "solid",
            "--model", "red", "--input-key", "prompt", pythonpath=[installed], check=True)
    run_cli("export", str(tmp_path / "run"), "--to", str(tmp_path / "out.jsonl"), pythonpath=[installed], check=True)
    row = read_jsonl(tmp_path / "out.jsonl")[0]
    image_path = row["images"][0]
    from PIL import Image

    with Image.open(tmp_path / "run" / image_path) as im:
        assert im.getpixel((0, 0)) == (255, 0, 0)
