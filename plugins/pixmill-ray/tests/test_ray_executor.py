"""The ray executor on a real local Ray (CPU): same rows as the local executor, failure rules,
lazy input, what stays on the driver. Every test has a timeout; none runs `ray stop`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pixmill import Storage
from pixmill.context import StepContext
from pixmill.errors import PixmillError
from pixmill.executor import StepTask
from pixmill.ops.images import GenerateImages
from pixmill_testing import read_jsonl, step_failures, step_rows, write_jsonl

pytestmark = pytest.mark.timeout(120)

RAY = {"replicas": 2, "cpus_per_replica": 0.5}


def paint(**opts):
    from ray_paint import RayPaint

    return RayPaint(**opts)


def run(tmp_path: Path, rows: list[dict], op, name: str, executor: str = "ray", retry_failed: bool = False,
        **executor_options) -> tuple[list[dict], dict[str, str], Path, Storage]:
    inp = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / name
    opts = {**RAY, **executor_options} if executor == "ray" else {}
    with Storage(input=inp, out=out, executor=executor, executor_options=opts, retry_failed=retry_failed) as st:
        op.run(st.step())
        executor_obj = st._runner.executor
    return step_rows(out, 1), step_failures(out, 1), out, executor_obj


def test_same_rows_and_pixels_as_the_local_executor_made_by_other_processes(tmp_path, rt, local_ray):
    rows = [{"id": str(i), "prompt": f"prompt {i}"} for i in range(10)] + [{"id": "r", "prompt": "refuse"}]
    op = GenerateImages(serving=paint(delay=0.2), batch_size=2, output_key="image")
    local, local_failed, out1, _ = run(tmp_path, rows, op, "local", executor="local")
    remote, remote_failed, out2, ex = run(tmp_path, rows, op, "ray", runtime_env={"env_vars": {"HF_TOKEN": "hf_x"}})
    assert ex.actors_started == 2
    # Batches finish in any order; the runner records each row with its upstream position.
    local, remote = (sorted(rs, key=lambda r: r["id"]) for rs in (local, remote))
    assert [r["id"] for r in remote] == [r["id"] for r in local], "the same rows"
    assert [r["image"] for r in remote] == [r["image"] for r in local], "the same file names"
    assert {rt.pixels(out1 / r["image"]) == rt.pixels(out2 / r["image"]) for r in local} == {True}
    assert remote_failed.keys() == local_failed.keys() == {"r"}
    pids = {r["image_meta"]["pid"] for r in remote}
    assert len(pids) == 2 and os.getpid() not in pids, "two replicas, both other processes"
    manifest = (out2 / "manifest.json").read_text()
    assert '"name": "ray"' in manifest and "runtime_env" not in manifest and "hf_x" not in manifest


def test_a_killed_worker_fails_only_its_batch_and_retry_failed_completes_it(tmp_path, local_ray):
    rows = [{"id": str(i), "prompt": "boom" if i == 5 else f"prompt {i}"} for i in range(12)]
    done, failed, out, ex = run(tmp_path, rows, GenerateImages(serving=paint(die_on="boom"), batch_size=2, output_key="image"), "kill")
    assert set(failed) == {"4", "5"}, "only the batch holding the fatal row fails"
    assert "died while running this batch of 2 rows" in failed["4"]
    assert len(done) == 10
    assert ex.actors_started == 3, "a replacement actor started"
    # die_on is not part of the step key: the same step, now with a healthy serving, retries them.
    done2, failed2, _, _ = run(tmp_path, rows, GenerateImages(serving=paint(), batch_size=2, output_key="image"), "kill",
                               retry_failed=True)
    assert not failed2 and sorted(int(r["id"]) for r in done2) == list(range(12))


def test_the_executor_reads_batches_lazily(tmp_path, local_ray):
    from pixmill_ray.executor import RayExecutor

    (tmp_path / "step").mkdir()
    ctx = StepContext(run_dir=tmp_path, step_dir=tmp_path / "step", input_dir=tmp_path)
    read: list[int] = []

    def batches():
        for i in range(30):
            read.append(i)
            yield [{"id": str(i), "prompt": f"p{i}"}]

    ex = RayExecutor(replicas=2, cpus_per_replica=0.5, prefetch=1)
    stream = ex.map(StepTask(GenerateImages(serving=paint(delay=0.05), output_key="image"), ctx), batches())
    next(stream)
    # Two replicas, each running one batch with one more queued, and the one just refilled.
    assert len(read) <= 2 * (1 + 1) + 1
    assert len(list(stream)) == 29 and len(read) == 30


def test_http_and_model_free_steps_start_no_actors(tmp_path, local_ray):
    from pixmill import get_serving
    from pixmill.ops.basic import Filter
    from pixmill_testing.openai_server import FakeOpenAIServer

    rows = [{"id": str(i), "prompt": f"prompt {i}", "n": i} for i in range(6)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    with FakeOpenAIServer() as server, Storage(input=inp, out=tmp_path / "out", executor="ray",
                                               executor_options=RAY) as st:
        Filter(where="n < 4").run(st.step())
        GenerateImages(serving=get_serving("openai-images", base_url=server.url, api_key="k"), output_key="image").run(st.step())
        GenerateImages(serving=paint(local=True), output_key="image").run(st.step())
        assert st._runner.executor.actors_started == 0
        made = list(st.rows())
    assert len(made) == 4 and all(r["image_meta"]["pid"] == os.getpid() for r in made)


def test_a_replica_that_cannot_load_stops_the_step_with_the_reason(tmp_path, local_ray):
    rows = [{"id": "0", "prompt": "p"}]
    with pytest.raises(PixmillError, match=r"every worker failed to start: Ray replica \d .*weights not found"):
        run(tmp_path, rows, GenerateImages(serving=paint(fail_load=True)), "load")


def test_an_actor_ray_cannot_place_fails_naming_the_resources(tmp_path, local_ray):
    rows = [{"id": "0", "prompt": "p"}]
    op = GenerateImages(serving=paint(), batch_size=1, output_key="image")
    with pytest.raises(PixmillError, match="Ray could not place a replica .* asks for 0 GPUs and 64 CPUs"):
        run(tmp_path, rows, op, "place", replicas=1, cpus_per_replica=64, placement_timeout=2)


DRIVER = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even under a background job
sys.path.insert(0, {here!r})
from ray_paint import RayPaint
from pixmill import Storage
from pixmill.ops.images import GenerateImages

with Storage(input={inp!r}, out={out!r}, executor="ray",
             executor_options={{"address": {address!r}, "replicas": 2, "cpus_per_replica": 0.5,
                               "runtime_env": {env!r}}}) as st:
    GenerateImages(serving=RayPaint(delay={delay}), batch_size=2, output_key="image").run(st.step())
"""


def _committed(ledger: Path) -> dict[str, int]:
    import json

    done: dict[str, int] = {}
    for line in ledger.read_text(encoding="utf-8").splitlines() if ledger.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line is not a commit
        done.update(dict.fromkeys(entry["done"], 1))
    return done


def _driver_after_first_commit(tmp_path: Path, ray, ray_env, n: int, out: Path, delay: float):
    """Start a driver process (the Python API, joining the test's Ray) over ``n`` rows and return
    once it committed a batch: (process, ledger path, script path)."""
    import subprocess
    import sys
    import time

    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "prompt": f"prompt {i}"} for i in range(n)])
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(here=str(Path(__file__).parent), inp=str(inp), out=str(out),
                                    address=ray.get_runtime_context().gcs_address, env=ray_env, delay=delay))
    ledger = out / "01-generate-images" / "ledger.jsonl"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not _committed(ledger) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None or not _committed(ledger):
        proc.kill()
        pytest.fail("the driver ended or stalled before its first commit: "
                    + (proc.stderr.read().decode()[-2000:] if proc.stderr else ""))
    return proc, ledger, script


def test_kill_9_of_the_driver_mid_step_then_rerun_gives_the_uninterrupted_output(tmp_path, rt, local_ray, ray_env):
    import signal
    import subprocess
    import sys

    out = tmp_path / "killed"
    proc, ledger, script = _driver_after_first_commit(tmp_path, local_ray, ray_env, 24, out, delay=0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = {r["id"]: r["image_meta"]["pid"] for r in step_rows(out, 1) if r["id"] in _committed(ledger)}
    assert 0 < len(before) < 24, "killed mid-step"
    rerun = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    resumed = {r["id"]: r for r in step_rows(out, 1)}
    assert sorted(resumed, key=int) == [str(i) for i in range(24)], "every row exactly once"
    assert all(resumed[i]["image_meta"]["pid"] == pid for i, pid in before.items()), "committed rows kept"
    rows = read_jsonl(tmp_path / "in.jsonl")
    uninterrupted, _, clean, _ = run(tmp_path, rows, GenerateImages(serving=paint(), batch_size=2, output_key="image"), "clean",
                                     executor="local")
    for r in uninterrupted:
        assert resumed[r["id"]]["image"] == r["image"]
        assert rt.pixels(out / r["image"]) == rt.pixels(clean / r["image"])


def test_ctrl_c_starts_no_new_batch_and_commits_what_finishes(tmp_path, local_ray, ray_env):
    import signal

    out = tmp_path / "interrupted"
    proc, ledger, _ = _driver_after_first_commit(tmp_path, local_ray, ray_env, 40, out, delay=1.0)
    at_interrupt = len(_committed(ledger))
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and b"Interrupt" in err  # pixmill.interrupt.Interrupted is a KeyboardInterrupt
    after = len(_committed(ledger))
    # Committed after the signal: what finished in the last second before it (grouped commits: at most
    # one batch per replica at 1 s a batch) plus what was in flight (one batch running and one queued
    # per replica); 2 rows a batch, 2 replicas. Nothing new started, so the run stopped far from done.
    assert at_interrupt <= after <= at_interrupt + 2 * (1 + 2) * 2 < 40
