"""The runner: step keys, resume, atomic commits, failure records, kill -9 at any point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import make_plugin, read_jsonl, run_cli, step_rows, write_jsonl
from pixmill import Operator
from pixmill.errors import InputError, PixmillError
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill.plugins import get_registry
from pixmill.runner import Runner

# A plugin with operators that do visible work: each processed row id is appended to a log file,
# so tests can tell exactly which rows were processed, and how often.
WORK_PLUGIN = '''
import os, time
from pixmill import Operator, Option, Failed, hookimpl

class Work(Operator):
    name = "work"
    options = (Option("tag", str, "a", "value written to the row"),
               Option("sleep", float, 0.0, "seconds per batch", cache=False),
               Option("fail_if", str, "", "fail rows whose text contains this"),
               Option("log", str, "", "file to append processed ids to", cache=False))
    default_batch_size = 10

    def process(self, rows, ctx):
        time.sleep(self.config["sleep"])
        if self.config["log"]:
            with open(self.config["log"], "a") as fh:
                fh.write("".join(r["id"] + "\\n" for r in rows))
        bad = self.config["fail_if"]
        return [Failed("contains " + bad) if bad and bad in r.get("text", "") else {**r, "work_" + self.config["tag"]: r["text"].upper()}
                for r in rows]

class Explode(Operator):
    name = "explode"
    options = (Option("n", int, 3, "children per row"),)

    def process(self, rows, ctx):
        return [[{"text": f"{r['text']}-{i}"} for i in range(self.config["n"])] for r in rows]

@hookimpl
def register_operators(register):
    register(Work)
    register(Explode)
'''


@pytest.fixture
def work_site(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = make_plugin(tmp_path_factory.mktemp("site"), "pixmill-work", "pixmill_work", WORK_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    import importlib

    importlib.invalidate_caches()
    return site


def rows_input(tmp_path: Path, n: int = 40, bad: set[int] = frozenset()) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"text": f"row {i}{' BAD' if i in bad else ''}"} for i in range(n)])


def spec(tmp_path: Path, inp: Path, *steps: StepSpec, out: str = "run", **kw) -> PipelineSpec:
    return PipelineSpec(steps=list(steps), input=inp, out=tmp_path / out, **kw)


def final_rows(results, out: Path) -> list[dict]:
    return step_rows(out, results[-1].index)


def test_rows_get_stable_ids_and_outputs_attach_by_id(tmp_path, work_site):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "cat", "text": "a"}, {"id": 7, "text": "b"}])
    results = run_pipeline(spec(tmp_path, inp, StepSpec("work")))
    assert [r["id"] for r in final_rows(results, tmp_path / "run")] == ["cat", "7"]
    inp2 = write_jsonl(tmp_path / "in2.jsonl", [{"text": "a"}, {"text": "b"}])
    results = run_pipeline(spec(tmp_path, inp2, StepSpec("work"), out="run2"))
    assert [r["id"] for r in final_rows(results, tmp_path / "run2")] == ["0", "1"]


def test_duplicate_ids_are_an_input_error_naming_the_record(tmp_path, work_site):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    with pytest.raises(InputError, match=r"record 2 repeats id 'x'"):
        run_pipeline(spec(tmp_path, inp, StepSpec("work")))


def test_rerun_does_no_work_and_changing_a_step_recomputes_it_and_later_steps(tmp_path, work_site):
    inp = rows_input(tmp_path, 20)
    log = tmp_path / "log.txt"
    steps = [StepSpec("work", {"tag": "a", "log": str(log)}), StepSpec("template", {"template": "{work_a}!", "output_key": "t"})]
    first = run_pipeline(spec(tmp_path, inp, *steps))
    assert [r.cached for r in first] == [False, False, False]
    again = run_pipeline(spec(tmp_path, inp, *steps))
    assert [r.cached for r in again] == [True, True, True]
    assert len(log.read_text().split()) == 20  # nothing processed twice
    # A run-only option (sleep, cache=False) changes nothing.
    steps[0].options["sleep"] = 0.001
    assert [r.cached for r in run_pipeline(spec(tmp_path, inp, *steps))] == [True, True, True]
    # Changing the last step recomputes only it.
    steps[1].options["template"] = "{work_a}?"
    assert [r.cached for r in run_pipeline(spec(tmp_path, inp, *steps))] == [True, True, False]
    # Changing the first step recomputes it and everything after; the old folder is kept aside.
    steps[0].options["tag"] = "b"
    steps[1].options["template"] = "{work_b}?"
    results = run_pipeline(spec(tmp_path, inp, *steps))
    assert [r.cached for r in results] == [True, False, False]
    assert final_rows(results, tmp_path / "run")[0]["t"] == "ROW 0?"
    assert any((tmp_path / "run" / ".stale").iterdir())


def test_editing_the_input_recomputes(tmp_path, work_site):
    inp = rows_input(tmp_path, 5)
    run_pipeline(spec(tmp_path, inp, StepSpec("work")))
    with open(inp, "a") as fh:
        fh.write(json.dumps({"text": "row 5"}) + "\n")
    results = run_pipeline(spec(tmp_path, inp, StepSpec("work")))
    assert results[0].cached is False and results[-1].rows == 6


def test_failed_rows_are_recorded_and_retried_only_on_request(tmp_path, work_site):
    inp = rows_input(tmp_path, 30, bad={3, 17})
    log = tmp_path / "log.txt"
    s = spec(tmp_path, inp, StepSpec("work", {"fail_if": "BAD", "log": str(log)}))
    results = run_pipeline(s)
    assert (results[-1].done, results[-1].failed, results[-1].rows) == (28, 2, 28)
    failed = read_jsonl(tmp_path / "run" / results[-1].folder / "failed.jsonl")
    assert {f["id"] for f in failed} == {"3", "17"}
    assert all(f["reason"] == "contains BAD" and "BAD" in f["row"]["text"] for f in failed)
    # A plain rerun does not retry them.
    run_pipeline(s)
    assert len(log.read_text().split()) == 30
    # --retry-failed retries only them; once fixed, they succeed and the failure record goes away.
    s.steps[0].options["fail_if"] = "BAD"
    s.retry_failed = True
    run_pipeline(s)
    assert Counter(log.read_text().split())["3"] == 2 and len(log.read_text().split()) == 32
    proc = run_cli("status", str(tmp_path / "run"), "--json", check=True)
    status = json.loads(proc.stdout)
    assert status[-1]["failures"] == [{"reason": "contains BAD", "count": 2, "example_ids": ["3", "17"]}]


class Picky(Operator):
    """Raises for the whole batch when any row is bad (like a model call on a corrupt image)."""

    name = "picky"

    def process(self, rows, ctx):
        if any("BAD" in r["text"] for r in rows):
            raise ValueError("cannot decode image")
        return rows


def test_one_bad_row_never_sinks_its_batch(tmp_path):
    inp = rows_input(tmp_path, 25, bad={4})
    registry = get_registry()
    with Runner(tmp_path / "run", registry.get_store("jsonl")(), registry.get_executor("local")()) as runner:
        runner.run_source(inp, reader=registry.get_store("jsonl")())
        result = runner.run_step(Picky(batch_size=10))
    assert (result.done, result.failed, result.rows) == (24, 1, 24)
    failure = read_jsonl(tmp_path / "run" / result.folder / "failed.jsonl")[0]
    assert failure["id"] == "4" and failure["reason"] == "ValueError: cannot decode image"


def test_expanding_operator_children_ids_and_resume(tmp_path, work_site):
    inp = rows_input(tmp_path, 4)
    results = run_pipeline(spec(tmp_path, inp, StepSpec("explode", {"n": 2}), StepSpec("work")))
    rows = final_rows(results, tmp_path / "run")
    assert [r["id"] for r in rows] == ["0/0", "0/1", "1/0", "1/1", "2/0", "2/1", "3/0", "3/1"]
    assert rows[3]["work_a"] == "ROW 1-1"


def test_a_step_with_nothing_to_do_still_leaves_its_output(tmp_path, work_site):
    inp = rows_input(tmp_path, 10)
    s = spec(tmp_path, inp, StepSpec("filter", {"where": "text == 'nothing'"}), StepSpec("work"), StepSpec("head", {"n": 3}))
    results = run_pipeline(s)
    assert [r.rows for r in results] == [10, 0, 0, 0]
    for r in results:
        info = json.loads((tmp_path / "run" / r.folder / "step.json").read_text())
        assert info["complete"] is True
    assert [r.cached for r in run_pipeline(s)] == [True] * 4


def test_torn_ledger_line_and_orphan_part_are_ignored(tmp_path, work_site):
    inp = rows_input(tmp_path, 30)
    log = tmp_path / "log.txt"
    s = spec(tmp_path, inp, StepSpec("work", {"log": str(log), "sleep": 0.06}))
    results = run_pipeline(s)
    folder = tmp_path / "run" / results[-1].folder
    # Simulate a crash during the last commit: the part was renamed in, the ledger line torn.
    ledger = folder / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    info = json.loads((folder / "step.json").read_text())
    info["complete"] = False
    (folder / "step.json").write_text(json.dumps(info))
    before = len(log.read_text().split())
    results = run_pipeline(s)
    rows = final_rows(results, tmp_path / "run")
    assert sorted(int(r["id"]) for r in rows) == list(range(30))  # every row exactly once
    assert len(log.read_text().split()) - before == 10  # only the torn batch was redone
    assert ledger.read_text().endswith("\n")


def test_a_second_process_cannot_run_the_same_folder(tmp_path):
    registry = get_registry()
    store, executor = registry.get_store("jsonl")(), registry.get_executor("local")()
    with Runner(tmp_path / "run", store, executor):
        with pytest.raises(PixmillError, match="in use by another pixmill process"):
            with Runner(tmp_path / "run", store, executor):
                pass


def test_no_input_starts_from_one_seed_row(tmp_path, work_site):
    results = run_pipeline(PipelineSpec(steps=[StepSpec("template", {"template": "x", "output_key": "text"}),
                                               StepSpec("explode", {"n": 3})], out=tmp_path / "run"))
    assert [r["id"] for r in final_rows(results, tmp_path / "run")] == ["0/0", "0/1", "0/2"]


# -- kill -9 at several points ----------------------------------------------------------------------

def _pipeline_file(tmp_path: Path, inp: Path, log: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"input: {inp}\nout: run\nsteps:\n"
        f"  - template: {{template: 'item {{text}}', output_key: text}}\n"
        f"  - work: {{tag: a, sleep: 0.06, log: {log}}}\n"
        f"  - dedupe: {{key: text}}\n"
        f"  - work: {{tag: b, sleep: 0.06, log: {log}.b}}\n"
        f"  - filter: {{where: \"work_b != 'ITEM ROW 7'\"}}\n")
    return path


def _kill_when(proc: subprocess.Popen, ledger: Path, min_lines: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ledger.exists() and ledger.read_text().count("\n") >= min_lines:
            break
        if proc.poll() is not None:
            raise AssertionError("the run ended before the kill point")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("step_folder,min_lines", [("02-work", 1), ("02-work", 6), ("04-work", 2), ("04-work", 9)])
def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path, work_site, step_folder, min_lines):
    inp = rows_input(tmp_path, 120)
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "killed"
    ref_dir.mkdir(), kill_dir.mkdir()
    env = {"PYTHONPATH": str(work_site)}
    run_cli("run", "-q", str(_pipeline_file(ref_dir, inp, ref_dir / "log")), cwd=ref_dir, env=env, check=True)

    pipeline = _pipeline_file(kill_dir, inp, kill_dir / "log")
    proc = subprocess.Popen([sys.executable, "-m", "pixmill", "run", "-q", str(pipeline)], cwd=kill_dir,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, kill_dir / "run" / step_folder / "ledger.jsonl", min_lines)
    run_cli("run", "-q", str(pipeline), cwd=kill_dir, env=env, check=True)

    for d in (ref_dir, kill_dir):
        run_cli("export", str(d / "run"), "--to", str(d / "out.jsonl"), env=env, check=True)
    assert read_jsonl(kill_dir / "out.jsonl") == read_jsonl(ref_dir / "out.jsonl")
    # At most the batch in flight (10 rows) was processed twice, per step.
    for log in ("log", "log.b"):
        counts = Counter((kill_dir / log).read_text().split())
        assert len(counts) == 120
        assert sum(c - 1 for c in counts.values()) <= 10, counts.most_common(3)


def test_a_shorter_pipeline_retires_the_steps_it_no_longer_has(tmp_path, work_site):
    inp = rows_input(tmp_path, 5)
    run_pipeline(spec(tmp_path, inp, StepSpec("work"), StepSpec("head", {"n": 2})))
    results = run_pipeline(spec(tmp_path, inp, StepSpec("work")))
    assert [r.cached for r in results] == [True, True]
    visible = sorted(p.name for p in (tmp_path / "run").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert visible == ["00-input", "01-work"]
    assert [p.name[:7] for p in (tmp_path / "run" / ".stale").iterdir()] == ["02-head"]


def test_status_follows_a_step_while_it_runs(tmp_path, work_site):
    inp = rows_input(tmp_path, 200)
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text(f"input: {inp}\nout: run\nsteps:\n  - work: {{sleep: 0.06}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "pixmill", "run", "-q", str(yaml_path)],
                            env={**os.environ, "PYTHONPATH": str(work_site)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ledger = tmp_path / "run" / "01-work" / "ledger.jsonl"
        deadline = time.time() + 60
        while not (ledger.exists() and ledger.read_text().count("\n") >= 2) and time.time() < deadline:
            time.sleep(0.01)
        status = json.loads(run_cli("status", str(tmp_path / "run"), "--json",
                                    env={"PYTHONPATH": str(work_site)}, check=True).stdout)
        assert status[-1]["folder"] == "01-work" and status[-1]["complete"] is False
        assert 20 <= status[-1]["done"] < 200
    finally:
        proc.kill()
        proc.wait()
