"""A pipeline means one thing: rows keep their input order whatever the concurrency, the same command
gives the same dataset, the cache survives changing your mind, exit codes say what happened, the
DataFlow-MM formats run with no key options, and the Python API is the CLI's twin."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, read_jsonl, run_cli, write_jsonl
from pixmill import Operator, Option, Run
from pixmill.builtins.jsonl_store import JsonlStore
from pixmill.builtins.local_executor import LocalExecutor
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill.runner import Runner
from pixmill_testing.openai_server import FakeOpenAIServer

EXAMPLES = REPO / "example_data"


FINISHED: list[str] = []  # the order Slow's batches finished in


class Slow(Operator):
    """Later rows finish first: batch i sleeps less than batch i-1."""

    name = "slow"
    options = (Option("rows", int, 20, cache=False),)
    default_batch_size = 1

    def process(self, rows, ctx):
        time.sleep(0.003 * (self.config["rows"] - int(rows[0]["id"])))
        FINISHED.append(rows[0]["id"])
        return [{**r, "seen": True} for r in rows]


def test_rows_keep_upstream_order_whatever_order_batches_finish(tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "n": i} for i in range(20)])
    FINISHED.clear()
    with Runner(tmp_path / "run", JsonlStore(), LocalExecutor(workers=8)) as runner:
        runner.run_source(rows, reader=JsonlStore())
        runner.run_step(Slow())
    assert FINISHED != sorted(FINISHED, key=int), "batches really finished out of order"
    assert [r["id"] for r in Run(tmp_path / "run").rows()] == [str(i) for i in range(20)]


def _api_chain(server: FakeOpenAIServer, inp: Path, out: Path, size: str = "64x48") -> list[str]:
    return ["run", "-q", "-i", str(inp), "-o", str(out), "generate-images", "--serving", "openai-images",
            "--base-url", server.url, "--size", size, "--concurrency", "8", "--batch-size", "1",
            "head", "--n", "3"]


def test_head_after_a_concurrent_api_step_keeps_the_first_rows_and_runs_are_byte_identical(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"a kite number {i}"} for i in range(24)])
    digests = []
    with FakeOpenAIServer(latency=0.02) as server:
        for name in ("one", "two"):
            run_cli(*_api_chain(server, inp, tmp_path / name), env={"OPENAI_API_KEY": "sk-test"}, check=True)
            run_cli("export", str(tmp_path / name), "--to", str(tmp_path / f"{name}.jsonl"), check=True)
            exported = read_jsonl(tmp_path / f"{name}.jsonl")
            assert [r["id"] for r in exported] == ["0", "1", "2"], "head keeps the first rows of the input"
            images = sorted((tmp_path / name).rglob("*.png"))
            digests.append(((tmp_path / f"{name}.jsonl").read_bytes(),
                            [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]))
    assert digests[0] == digests[1], "the same command in two fresh folders gives the same dataset"


def test_going_back_to_an_earlier_chain_does_no_work_and_gc_frees_retired_steps(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"a lighthouse {i}"} for i in range(16)])

    def spec(size: str) -> PipelineSpec:
        serving = {"name": "openai-images", "base_url": server.url, "api_key": "sk-test", "size": size,
                   "concurrency": 4}
        return PipelineSpec(steps=[StepSpec("generate-images", {"serving": serving})], input=inp, out=tmp_path / "run")

    with FakeOpenAIServer(latency=0.3) as server:
        first = sum(r.seconds for r in run_pipeline(spec("64x48")))
        run_pipeline(spec("32x32"))  # chain B, into the same folder
        sent = len(server.requests)
        started = time.monotonic()
        again = run_pipeline(spec("64x48"))  # back to chain A
        third = time.monotonic() - started
        assert len(server.requests) == sent, "no request sent again"
    assert all(r.cached for r in again) and third < 0.1 * first
    retired = list((tmp_path / "run" / ".stale").iterdir())
    assert len(retired) == 1, "chain B's step waits in .stale/ in case we go back again"
    dry = run_cli("gc", str(tmp_path / "run"), "--dry-run", check=True)
    assert "would free" in dry.stdout and retired[0].name in dry.stdout and retired[0].exists()
    done = run_cli("gc", str(tmp_path / "run"), check=True)
    assert "1 retired step folder(s), freed" in done.stdout and not retired[0].exists()
    assert [r["id"] for r in Run(tmp_path / "run").rows()] == [str(i) for i in range(16)]


def test_exit_codes_and_quiet_still_reports_failures(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    failed = run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "template", "--template", "{nope}")
    assert failed.returncode == 3 and "2 rows failed" in failed.stderr and failed.stdout == ""
    ok = run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "ok"), "head", "--n", "1")
    assert ok.returncode == 0 and ok.stderr == ""
    cannot_start = run_cli("run", "-i", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x"), "head")
    assert cannot_start.returncode == 1
    usage = run_cli("run", "-i", str(inp), "head", "--no-such-flag")
    assert usage.returncode == 2


def test_dataflow_mm_formats_run_with_no_key_options(tmp_path):
    env = {"OPENAI_API_KEY": "sk-test"}
    judge_answer = '{"prompt_alignment": 8, "visual_quality": 7, "overall": 7.5, "rationale": "fine"}'
    with FakeOpenAIServer(chat_handler=lambda rec: judge_answer) as server:
        api = ["--serving", "openai-images", "--base-url", server.url, "--size", "32x32"]
        # text-to-image rows: images land in `images`, a list, as in DataFlow-MM
        run_cli("run", "-q", "-i", str(EXAMPLES / "text2image" / "prompts.jsonl"), "-o", str(tmp_path / "t2i"),
                "generate-images", *api, env=env, check=True)
        rows = list(Run(tmp_path / "t2i").rows())
        assert rows and all(isinstance(r["images"], list) and len(r["images"]) == 1 for r in rows)
        # editing rows: `conversations` is the instruction, `images` the source, `edited_images` the result
        run_cli("run", "-q", "-i", str(EXAMPLES / "edit" / "edits.jsonl"), "-o", str(tmp_path / "edit"),
                "edit-images", *api, env=env, check=True)
        rows = list(Run(tmp_path / "edit").rows())
        assert len(rows) == 3 and all((tmp_path / "edit" / r["edited_images"][0]).is_file() for r in rows)
        # evaluation rows: judged and captioned
        llm = ["--serving", "openai-llm", "--base-url", server.url]
        run_cli("run", "-q", "-i", str(EXAMPLES / "evaluation" / "eval.jsonl"), "-o", str(tmp_path / "eval"),
                "judge", *llm, "caption", *llm, env=env, check=True)
        rows = list(Run(tmp_path / "eval").rows())
        assert len(rows) == 2 and all(r["scores"]["overall"] == 7.5 and r["caption"] for r in rows)
        # generate -> edit -> judge, defaults only
        run_cli("run", "-q", "-i", str(EXAMPLES / "text2image" / "prompts.jsonl"), "-o", str(tmp_path / "chain"),
                "generate-images", *api, "edit-images", *api, "judge", *llm, env=env, check=True)
        rows = list(Run(tmp_path / "chain").rows())
        assert len(rows) == 8 and all(r["edited_images"] and r["scores"]["overall"] == 7.5 for r in rows)
        judged = [r for r in server.requests if r.endpoint == "chat/completions"]
        assert judged and all(r.image_parts == 1 for r in judged)


def test_a_chain_whose_fields_cannot_match_fails_before_any_model_loads(tmp_path):
    with FakeOpenAIServer() as server:
        api = ["--serving", "openai-images", "--base-url", server.url]
        proc = run_cli("run", "-i", str(EXAMPLES / "text2image" / "prompts.jsonl"), "-o", str(tmp_path / "run"),
                       "generate-images", *api, "edit-images", *api, "--image-key", "pictures",
                       env={"OPENAI_API_KEY": "sk-test"})
        assert proc.returncode == 1
        assert "step 2 (edit-images) reads 'pictures'" in proc.stderr and "pixmill run edit-images --help" in proc.stderr
        assert server.requests == [], "no step ran"


def test_python_api_writes_a_pipeline_file_that_reruns_cached_and_shows_progress(tmp_path):
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(f"""
        from pixmill import Storage, get_operator
        with Storage(input={str(EXAMPLES / "text2image" / "prompts.jsonl")!r}, out={str(tmp_path / "run")!r}) as s:
            get_operator("template")(template="{{conversations}}, watercolor").run(s.step(), output_key="prompt")
            get_operator("head")(n=2).run(s.step())
    """), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "01-template" in proc.stderr and "02-head" in proc.stderr, "the CLI's progress lines"
    steps = yaml.safe_load((tmp_path / "run" / "pipeline.yaml").read_text())["steps"]
    assert [next(iter(s)) for s in steps] == ["template", "head"]
    rerun = run_cli("run", str(tmp_path / "run" / "pipeline.yaml"), check=True)
    assert rerun.stdout.count("cached") == 3, rerun.stdout


def test_init_lists_examples_by_what_they_need_offline_first(tmp_path):
    proc = run_cli("init", str(tmp_path / "ex"), check=True)
    text = proc.stdout
    assert text.index("offline") < text.index("an API key") < text.index("a GPU")
    assert "pixmill run prompts-basic.yaml" in text and "python demo.py" in text
    assert "start with:" in text and "prompts-basic.yaml" in text.split("start with:")[1]
    run_cli("run", "-q", "prompts-basic.yaml", cwd=tmp_path / "ex", check=True)


@pytest.mark.parametrize("store", ["jsonl", "parquet"])
def test_interleaved_parts_merge_in_order_for_every_store(tmp_path, store):
    pytest.importorskip("pixmill_parquet") if store == "parquet" else None
    from pixmill.plugins import get_registry

    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i)} for i in range(30)])
    with Runner(tmp_path / "run", get_registry().get_store(store)(), LocalExecutor(workers=6)) as runner:
        runner.run_source(inp, reader=JsonlStore())
        runner.run_step(Slow(rows=30))
    assert [r["id"] for r in Run(tmp_path / "run").rows()] == [str(i) for i in range(30)]


def test_python_api_checks_every_serving_before_the_first_step(tmp_path):
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(f"""
        from pixmill import Storage, get_operator, get_serving
        images = get_serving("openai-images", api_key_env="PIXMILL_TEST_NO_SUCH_KEY")  # made first, used last
        with Storage(input={str(EXAMPLES / "text2image" / "prompts.jsonl")!r}, out={str(tmp_path / "run")!r}) as s:
            get_operator("head")(n=2).run(s.step())
            get_operator("generate-images")(serving=images).run(s.step())
    """), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in __import__("os").environ.items() if "API_KEY" not in k})
    assert proc.returncode != 0 and "PIXMILL_TEST_NO_SUCH_KEY" in proc.stderr
    assert not (tmp_path / "run" / "01-head").exists(), "the failure came before the first step"
