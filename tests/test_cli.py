"""The CLI as a user meets it: chains, pipeline files, errors as one line, status, export, init."""

from __future__ import annotations

import io
import json
import shutil

from helpers import REPO, read_jsonl, run_cli, step_rows

CHAIN = ["template", "--template", "a photo of {conversations}", "--output-key", "prompt",
         "filter", "--where", "n % 2 == 0", "head", "--n", "10"]


def test_chain_runs_and_rerun_is_cached(tmp_path, prompts_file):
    proc = run_cli("run", "-i", str(prompts_file), "-o", str(tmp_path / "run"), *CHAIN, check=True)
    assert "03-head" in proc.stdout and "10 rows" in proc.stdout
    rows = step_rows(tmp_path / "run", 3)
    assert [r["prompt"] for r in rows[:2]] == ["a photo of a cat number 0", "a photo of a cat number 2"]
    again = run_cli("run", "-i", str(prompts_file), "-o", str(tmp_path / "run"), *CHAIN, check=True)
    assert again.stdout.count("cached") == 4


def test_pipeline_file_equals_the_chain_and_paths_are_relative_to_it(tmp_path, prompts_file):
    run_cli("run", "-q", "-i", str(prompts_file), "-o", str(tmp_path / "chain"), *CHAIN, check=True)
    # The run folder keeps a runnable copy of the pipeline.
    saved = (tmp_path / "chain" / "pipeline.yaml").read_text()
    assert "template: a photo of {conversations}" in saved
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text(f"input: {prompts_file.name}\nout: fromfile\nsteps:\n"
                         "  - template: {template: 'a photo of {conversations}', output_key: prompt}\n"
                         "  - filter: {where: 'n % 2 == 0'}\n  - head: {n: 10}\n")
    run_cli("run", "-q", str(yaml_path), cwd=elsewhere, check=True)  # run from another folder
    for name in ("chain", "fromfile"):
        run_cli("export", str(tmp_path / name), "--to", str(tmp_path / f"{name}.jsonl"), check=True)
    assert read_jsonl(tmp_path / "chain.jsonl") == read_jsonl(tmp_path / "fromfile.jsonl")
    # A saved pipeline.yaml reruns as is (and is then fully cached).
    again = run_cli("run", str(tmp_path / "chain" / "pipeline.yaml"), check=True)
    assert again.stdout.count("cached") == 4


def test_dry_run_validates_and_prints_yaml(tmp_path, prompts_file):
    proc = run_cli("run", "--dry-run", "-i", str(prompts_file), "-o", str(tmp_path / "run"), *CHAIN, check=True)
    assert "- head:\n    n: 10" in proc.stdout
    assert not (tmp_path / "run").exists()


def _one_line_error(proc) -> str:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_malformed_jsonl_names_file_line_and_the_skip_option(tmp_path):
    inp = tmp_path / "bad.jsonl"
    inp.write_text('{"text": "ok"}\n{"text": "broken"\n{"text": "also ok"}\n')
    line = _one_line_error(run_cli("run", "-i", str(inp), "-o", str(tmp_path / "run"), "head", "--n", "5"))
    assert f"{inp}:2" in line and "--skip-bad-lines" in line
    ok = run_cli("run", "-i", str(inp), "-o", str(tmp_path / "run"), "--skip-bad-lines", "head", "--n", "5", check=True)
    assert "1 bad input lines skipped" in ok.stdout
    skipped = read_jsonl(tmp_path / "run" / "00-input" / "skipped.jsonl")
    assert skipped[0]["line"] == 2 and skipped[0]["text"] == '{"text": "broken"'
    status = json.loads(run_cli("status", str(tmp_path / "run"), "--json", check=True).stdout)
    assert status[0]["skipped_lines"] == 1 and status[-1]["rows"] == 2


def test_clear_errors(tmp_path, prompts_file):
    out = str(tmp_path / "run")
    line = _one_line_error(run_cli("run", "-i", str(tmp_path / "nope.jsonl"), "-o", out, "head", "--n", "1"))
    assert "nope.jsonl does not exist" in line
    line = _one_line_error(run_cli("run", "-i", str(prompts_file), "-o", out, "blur", "--radius", "2"))
    assert "unknown operator 'blur'" in line and "template" in line
    line = _one_line_error(run_cli("run", "-i", str(prompts_file), "-o", out, "--store", "csv", "head", "--n", "1"))
    assert "unknown store 'csv'" in line and "jsonl" in line
    line = _one_line_error(run_cli("run", "-i", str(prompts_file), "-o", out, "filter", "--where", "n >"))
    assert "does not parse" in line
    line = _one_line_error(run_cli("run", "-i", str(prompts_file), "-o", out, "head"))
    assert "--n" in line
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("steps:\n  - head: {n: 1\n")
    assert "not valid YAML" in _one_line_error(run_cli("run", str(bad_yaml)))


def test_an_error_never_loses_committed_work(tmp_path, prompts_file):
    out = str(tmp_path / "run")
    run_cli("run", "-q", "-i", str(prompts_file), "-o", out, *CHAIN, check=True)
    before = [step_rows(tmp_path / "run", k) for k in range(4)]
    broken = [*CHAIN[:-4], "filter", "--where", "n >>> 3"]
    _one_line_error(run_cli("run", "-i", str(prompts_file), "-o", out, *broken))
    assert [step_rows(tmp_path / "run", k) for k in range(4)] == before


def test_debug_shows_the_traceback(tmp_path, prompts_file):
    proc = run_cli("run", "-i", str(prompts_file), "-o", str(tmp_path / "r"), "head", env={"PIXMILL_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_operators_and_servings_list_options(tmp_path):
    ops = json.loads(run_cli("operators", "--json", check=True).stdout)
    template = next(o for o in ops if o["name"] == "template")
    assert {"--template", "--output-key", "--missing", "--batch-size"} <= {o["flag"] for o in template["options"]}
    text = run_cli("operators", check=True).stdout
    assert "filter" in text and "--where" in text
    assert run_cli("servings", check=True).returncode == 0
    help_text = run_cli("run", "template", "--help", check=True).stdout
    assert "--output-key" in help_text
    assert run_cli("--version", check=True).stdout.strip().startswith("pixmill, version ")


def test_status_and_export(tmp_path, prompts_file):
    out = tmp_path / "run"
    run_cli("run", "-q", "-i", str(prompts_file), "-o", str(out), *CHAIN, check=True)
    status = run_cli("status", str(out), check=True).stdout
    assert "03-head" in status and "complete" in status
    data = json.loads(run_cli("status", str(out), "--json", check=True).stdout)
    assert [s["name"] for s in data] == ["input", "template", "filter", "head"]
    assert [s["rows"] for s in data] == [50, 50, 25, 10]
    run_cli("export", str(out), "--to", str(tmp_path / "x.jsonl"), check=True)
    assert len(read_jsonl(tmp_path / "x.jsonl")) == 10
    line = _one_line_error(run_cli("export", str(out), "--to", str(tmp_path / "x.csv")))
    assert "no store writes .csv" in line


def test_init_copies_examples_that_run_from_their_folder(tmp_path):
    target = tmp_path / "demo"
    proc = run_cli("init", str(target), check=True)
    assert "prompts-basic.yaml" in proc.stdout
    assert (target / "text2image" / "prompts.jsonl").exists() and (target / "edit" / "images").is_dir()
    run_cli("run", "-q", "prompts-basic.yaml", cwd=target, check=True)
    assert (target / "runs" / "prompts-basic" / "04-head").is_dir()
    # ...and from anywhere else, since paths are relative to the pipeline file.
    shutil.rmtree(target / "runs")
    run_cli("run", "-q", str(target / "prompts-basic.yaml"), cwd=tmp_path, check=True)
    assert (target / "runs" / "prompts-basic" / "04-head").is_dir()
    assert _one_line_error(run_cli("init", str(target))).endswith("choose a new folder)")


def test_progress_bar_on_a_terminal_and_log_lines_otherwise(tmp_path):
    from pixmill.progress import BarProgress, LogProgress, make_progress
    from pixmill.runner import StepResult

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = make_progress(tty)
    assert isinstance(bar, BarProgress) and isinstance(make_progress(io.StringIO()), LogProgress)
    bar.step_started("01-template", total=1000, cached=False)
    bar.last = 0  # draw now
    bar.advanced(400, 3)
    bar.step_finished(StepResult(1, "template", "01-template", "k", 997, 3, 997, new_done=997, new_failed=3, seconds=1.0))
    shown = tty.getvalue()
    assert "403/1,000 rows" in shown and "failed 3" in shown and "rows/s" in shown and "ETA" in shown
    assert "done: 997 rows, 3 failed" in shown


def test_readme_commands_exist():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_a_fresh_step_folder_is_readable(tmp_path, prompts_file):
    out = tmp_path / "run"
    run_cli("run", "-q", "-i", str(prompts_file), "-o", str(out), *CHAIN, check=True)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["00-input", "01-template", "02-filter", "03-head", "manifest.json", "pipeline.yaml", "summary.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["folder"] for s in manifest["steps"]] == names[:4]


def test_every_example_pipeline_is_valid():
    """Each shipped pipeline file validates (operators, servings, options) without running."""
    examples = sorted((REPO / "example_data").rglob("*.yaml"))
    pipelines = [p for p in examples if "steps:" in p.read_text()]
    assert len(pipelines) >= 8
    for path in pipelines:
        proc = run_cli("run", "--dry-run", str(path))
        assert proc.returncode == 0, f"{path.relative_to(REPO)}: {proc.stderr}"
        assert "steps:" in proc.stdout


def test_status_groups_failures_that_differ_only_in_row_details():
    from pixmill.cli.status import reason_pattern

    a = "judge: unparsable answer; raw: '{\"items\": [1]}'"
    b = "judge: unparsable answer; raw: '{\"x\": 2}'"
    assert reason_pattern(a) == reason_pattern(b)
    assert reason_pattern("HTTP 500 after 3 tries") == reason_pattern("HTTP 500 after 4 tries")
    assert reason_pattern("empty prompt") != reason_pattern("image missing")
