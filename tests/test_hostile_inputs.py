"""Hostile or odd inputs: each is refused with a one-line reason, or handled without harm."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from helpers import read_jsonl, run_cli, step_rows, write_jsonl
from pixmill import Operator
from pixmill.errors import ConfigError
from pixmill.expr import compile_expr
from pixmill.operator import Failed
from pixmill.plugins import get_registry
from pixmill.runner import Runner


def _rows(tmp_path: Path, n: int = 6) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"text": f"row {i}"} for i in range(n)])


# -- input files ----------------------------------------------------------------------------------
def test_utf8_bom_does_not_cost_the_first_record(tmp_path):
    inp = tmp_path / "bom.jsonl"
    inp.write_bytes(b"\xef\xbb\xbf" + b'{"text": "first"}\n{"text": "second"}\nnot json\n')
    proc = run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "--skip-bad-lines",
                   "template", "--template", "{text}!", "--output-key", "t")
    assert proc.returncode == 0, proc.stderr
    assert [r["t"] for r in step_rows(tmp_path / "run", 1)] == ["first!", "second!"]
    skipped = read_jsonl(tmp_path / "run" / "00-input" / "skipped.jsonl")
    assert [s["line"] for s in skipped] == [3]


def test_same_size_in_place_edit_with_mtime_restored_is_noticed(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": "cat"}, {"text": "dog"}])
    args = ("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "template", "--template", "{text}",
            "--output-key", "t")
    run_cli(*args, check=True)
    before = inp.stat()
    with open(inp, "r+b") as fh:  # same inode, same size
        data = fh.read().replace(b"cat", b"cow")
        fh.seek(0)
        fh.write(data)
    os.utime(inp, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (inp.stat().st_size, inp.stat().st_mtime_ns, inp.stat().st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)
    run_cli(*args, check=True)
    assert [r["t"] for r in step_rows(tmp_path / "run", 1)] == ["cow", "dog"]


# -- retry of an interrupted step -----------------------------------------------------------------
class FlakyThenInterrupted(Operator):
    """Fails rows containing BAD (until told they are fixed), and is interrupted (Ctrl-C) at the
    batch holding ``stop_at`` on its first run."""

    name = "flaky-then-interrupted"
    default_batch_size = 2
    fixed = False
    interrupted = False
    seen: list[str] = []

    def process(self, rows, ctx):
        cls = type(self)
        if not cls.interrupted and any(r["text"] == "row 6" for r in rows):
            cls.interrupted = True
            raise KeyboardInterrupt
        cls.seen.extend(r["id"] for r in rows)
        return [Failed("bad") if "BAD" in r["text"] and not cls.fixed else {**r, "ok": True} for r in rows]


def test_retry_failed_applies_to_an_interrupted_step(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": f"row {i}" + (" BAD" if i == 1 else "")} for i in range(8)])
    registry = get_registry()
    store = registry.get_store("jsonl")

    def run(retry: bool):
        with Runner(tmp_path / "run", store(), registry.get_executor("local")(), retry_failed=retry) as runner:
            runner.run_source(inp, reader=store())
            return runner.run_step(FlakyThenInterrupted())

    with pytest.raises(KeyboardInterrupt):
        run(retry=False)
    assert FlakyThenInterrupted.seen == ["0", "1", "2", "3", "4", "5"]  # row 1 failed before the interrupt
    FlakyThenInterrupted.fixed = True
    FlakyThenInterrupted.seen = []
    result = run(retry=True)
    assert sorted(FlakyThenInterrupted.seen) == ["1", "6", "7"]  # the failed row is retried in this run
    assert (result.done, result.failed) == (8, 0)


# -- keys -----------------------------------------------------------------------------------------
def test_keys_set_never_changes_an_existing_folders_mode(tmp_path, monkeypatch):
    from pixmill.keys import set_key

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.setenv("PIXMILL_HOME", str(shared))
    path = set_key("demo", "sk-secret-value")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_file_others_can_read_is_refused(tmp_path, monkeypatch):
    from pixmill.keys import get_key, set_key

    monkeypatch.setenv("PIXMILL_HOME", str(tmp_path / "home"))
    path = set_key("demo", "sk-secret-value")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # a folder pixmill made is private
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        get_key("demo")
    assert "sk-secret-value" not in str(err.value)


# -- filter language ------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["len('a'*4000000000) > 1", "'%0999999999d' % 1", "not " * 3000 + "x",
                                    "-" * 9000 + "x", "len(" * 200 + "x" + ")" * 200])
def test_filter_expressions_that_would_exhaust_memory_or_stack_are_config_errors(source):
    with pytest.raises(ConfigError) as err:
        compile_expr(source)
    assert len(str(err.value)) < 600  # one line, not the whole expression


def test_filter_bounds_values_built_per_row():
    predicate = compile_expr("len(text * n) > 3")
    assert predicate({"text": "ab", "n": 2}) is True
    assert predicate({"text": "ab", "n": 4_000_000_000}) is False  # refused for the row, no gigabytes


# -- export ---------------------------------------------------------------------------------------
def test_export_split_cannot_leave_the_export_folder(tmp_path):
    inp = _rows(tmp_path)
    run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "head", "--n", "2", check=True)
    proc = run_cli("export", str(tmp_path / "run"), "--to", str(tmp_path / "out" / "ds"), "--format", "jsonl",
                   "--split", "../../escaped")
    assert proc.returncode == 1
    assert "split name '../../escaped' is not valid" in proc.stderr
    assert not list(tmp_path.rglob("escaped*"))
    assert len(proc.stderr.strip().splitlines()) == 1


# -- --out ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["manifest", "step-folders", "pipeline"])
def test_out_refuses_a_folder_that_is_not_a_run(tmp_path, content):
    inp = _rows(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    files = {"manifest": {"manifest.json": '{"my": "own manifest"}'},
             "step-folders": {"00-notes/a.txt": "mine", "01-drafts/b.txt": "mine too"},
             "pipeline": {"pipeline.yaml": "# my commented pipeline\nsteps: []\n"}}[content]
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    proc = run_cli("run", "-q", "-i", str(inp), "-o", str(out), "head", "--n", "2")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: --out {out} is a folder with other files in it, not a pixmill run "
        "(fix: choose a new or empty folder for the run)"]
    assert {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()} == files


def test_out_accepts_an_empty_folder_and_its_own_run(tmp_path):
    inp = _rows(tmp_path)
    out = tmp_path / "empty"
    out.mkdir()
    for _ in range(2):  # the second run resumes its own run folder
        run_cli("run", "-q", "-i", str(inp), "-o", str(out), "head", "--n", "2", check=True)
    assert len(step_rows(out, 1)) == 2
