"""A run that did not finish is never exported as if it had: export refuses it with one line,
unless asked for a finished step or --partial, and then the card and export.json say so; the
gallery shows it as incomplete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import read_jsonl, run_cli, write_jsonl
from pixmill import Operator, Run
from pixmill.plugins import get_registry
from pixmill.runner import Runner


class InterruptedAtRow(Operator):
    """Passes rows through, and is interrupted (as by Ctrl-C) when it reaches row 30."""

    name = "interrupted-at-row"
    default_batch_size = 10

    def process(self, rows, ctx):
        if any(r["id"] == "30" for r in rows):
            raise KeyboardInterrupt
        return rows


@pytest.fixture
def killed_run(tmp_path: Path) -> Path:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": f"row {i}"} for i in range(100)])
    registry = get_registry()
    store = registry.get_store("jsonl")
    with pytest.raises(KeyboardInterrupt):
        with Runner(tmp_path / "run", store(), registry.get_executor("local")()) as runner:
            runner.run_source(inp, reader=store())
            runner.run_step(InterruptedAtRow())
    return tmp_path / "run"


def test_export_refuses_a_run_that_did_not_finish(killed_run, tmp_path):
    for args in (["--to", str(tmp_path / "ds"), "--format", "jsonl"], ["--to", str(tmp_path / "rows.jsonl")]):
        proc = run_cli("export", str(killed_run), *args)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f"Error: run {killed_run} did not finish: step 01-interrupted-at-row did not finish (fix: rerun the "
            "same `pixmill run` command to finish it, or pass --partial (or --step NAME for a finished step) to "
            "export what is there, marked as partial)"]
    assert not (tmp_path / "ds").exists() and not (tmp_path / "rows.jsonl").exists()


def test_partial_export_says_so_in_the_card_and_export_json(killed_run, tmp_path):
    proc = run_cli("export", str(killed_run), "--to", str(tmp_path / "ds"), "--format", "jsonl", "--partial")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "ds" / "export.json").read_text())
    assert info["partial"] is True and info["rows"] == 30 and info["step"] == "01-interrupted-at-row"
    assert "step 01-interrupted-at-row did not finish" in info["incomplete"]
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "**Not the pipeline's finished result.**" in card and "did not finish" in card
    assert "partial" in proc.stderr


def test_a_finished_step_of_an_unfinished_run_can_be_named(killed_run, tmp_path):
    proc = run_cli("export", str(killed_run), "--to", str(tmp_path / "in.jsonl"), "--step", "input")
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(tmp_path / "in.jsonl")) == 100
    proc = run_cli("export", str(killed_run), "--to", str(tmp_path / "ds"), "--format", "jsonl", "--step", "00-input")
    info = json.loads((tmp_path / "ds" / "export.json").read_text())
    assert info["partial"] is True and info["step"] == "00-input" and info["rows"] == 100
    proc = run_cli("export", str(killed_run), "--to", str(tmp_path / "x.jsonl"), "--step", "judge")
    assert proc.returncode == 1 and "has no step named 'judge'" in proc.stderr


def test_a_run_stopped_between_steps_is_incomplete_too(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    proc = run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "head", "--n", "1", check=True)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["complete"] is True
    registry = get_registry()
    store = registry.get_store("jsonl")
    with Runner(tmp_path / "run", store(), registry.get_executor("local")()) as runner:
        runner.run_source(inp, reader=store())  # a process killed before its next step started
    proc = run_cli("export", str(tmp_path / "run"), "--to", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 1 and "the pipeline stopped after step 00-input" in proc.stderr


def test_gallery_marks_an_unfinished_run(killed_run, tmp_path):
    page = tmp_path / "gallery.html"
    run_cli("gallery", str(killed_run), "-o", str(page), check=True)
    html = page.read_text()
    data = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert data["incomplete"] == "step 01-interrupted-at-row did not finish"
    finished = tmp_path / "finished"
    run_cli("run", "-q", "-i", str(tmp_path / "in.jsonl"), "-o", str(finished), "head", "--n", "3", check=True)
    run_cli("gallery", str(finished), "-o", str(page), check=True)
    assert '"incomplete": null' in page.read_text() or '"incomplete":null' in page.read_text()


def test_a_killed_export_leaves_nothing_behind_after_the_next_export(tmp_path):
    import os
    import shutil
    import signal
    import subprocess
    import time

    from helpers import PIXMILL
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3)).save(data / "0.png")
    for i in range(1, 400):
        shutil.copyfile(data / "0.png", data / f"{i}.png")
    inp = write_jsonl(data / "in.jsonl", [{"image": f"{i}.png"} for i in range(400)])
    run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "head", "--n", "400", check=True)
    target = tmp_path / "ds"
    proc = subprocess.Popen([*PIXMILL, "export", str(tmp_path / "run"), "--to", str(target), "--format", "jsonl"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".ds.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert list(tmp_path.glob(".ds.*.tmp")), "the kill must land while the export is being staged"
    run_cli("export", str(tmp_path / "run"), "--to", str(target), "--format", "jsonl", check=True)
    assert not list(tmp_path.glob(".ds.*"))
    assert len(read_jsonl(target / "train.jsonl")) == 400


def test_a_truncated_committed_part_is_named_reported_and_repaired(tmp_path):
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline

    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": f"row {i}"} for i in range(30)])
    spec = PipelineSpec(steps=[StepSpec("template", {"template": "{text}!", "output_key": "t", "batch_size": 10}),
                               StepSpec("head", {"n": 30})], input=inp, out=tmp_path / "run")
    run_pipeline(spec)
    step = tmp_path / "run" / "01-template"
    ledger = [json.loads(line) for line in (step / "ledger.jsonl").read_text().splitlines()]
    parts = [step / entry["part"] for entry in ledger if entry["part"]]
    data = parts[-1].read_bytes()
    parts[-1].write_bytes(data[: len(data) // 2])  # a torn copy, a bad disk sector

    proc = run_cli("status", str(tmp_path / "run"))
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("01-template"))
    assert "damaged" in line and "complete" not in line
    assert f"damaged part {parts[-1].name}" in proc.stdout

    proc = run_cli("export", str(tmp_path / "run"), "--to", str(tmp_path / "x.jsonl"), "--step", "template")
    assert proc.returncode == 1 and "--skip-bad-lines" not in proc.stderr
    assert f"{parts[-1].name}" in proc.stderr and "rerun" in proc.stderr

    results = run_pipeline(spec)  # the rerun repairs the step: only the damaged part's rows are redone
    assert results[1].new_done == len(data.splitlines()) and not results[1].cached
    rows = list(Run(tmp_path / "run").rows(1))
    assert sorted(int(r["id"]) for r in rows) == list(range(30))
    assert run_cli("export", str(tmp_path / "run"), "--to", str(tmp_path / "y.jsonl")).returncode == 0
    assert len(read_jsonl(tmp_path / "y.jsonl")) == 30
