"""Keys through the CLI: a missing key fails before any work and names both fixes; the lookup order
(--api-key > stored > environment) holds end to end; no key ever reaches the run folder, the logs,
the manifest or an error message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pixmill import Run, get_serving
from pixmill.run_folder import RunFolder
from pixmill_testing import write_jsonl
from pixmill_testing.openai_server import FakeOpenAIServer, FaultRule

PIXMILL = str(Path(sys.executable).with_name("pixmill"))


def cli(args, env, stdin=None):
    return subprocess.run([PIXMILL, *args], capture_output=True, text=True, env=env, input=stdin, timeout=120)


def clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PIXMILL_HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


def t2i_args(input_path, out, server, *more):
    return ["run", "-i", str(input_path), "-o", str(out), "-q", "generate-images", "--serving", "openai-images",
            "--base-url", server.url, *more]


def test_missing_key_fails_before_any_work(tmp_path, server):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}])
    done = cli(t2i_args(inp, tmp_path / "out", server), clean_env(tmp_path))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()  # one line
    assert "no API key" in line and "pixmill keys set openai" in line and "export OPENAI_API_KEY" in line
    assert server.requests == []
    assert RunFolder(tmp_path / "out").step_dirs() == []  # no step started


def test_missing_key_with_a_custom_env_var_names_it(tmp_path, server):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}])
    done = cli(t2i_args(inp, tmp_path / "out", server, "--api-key-env", "OPENROUTER_API_KEY"), clean_env(tmp_path))
    assert done.returncode == 1
    assert "pixmill keys set openrouter" in done.stderr and "export OPENROUTER_API_KEY" in done.stderr


def test_lookup_order_end_to_end(tmp_path, server):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "order"}])
    env = clean_env(tmp_path, OPENAI_API_KEY="from-env")

    def used(*more, run):
        done = cli(t2i_args(inp, tmp_path / run, server, *more), env)
        assert done.returncode == 0, done.stderr
        return server.requests[-1].authorization

    assert used(run="a") == "Bearer from-env"
    assert cli(["keys", "set", "openai"], env, stdin="from-store\n").returncode == 0
    assert used(run="b") == "Bearer from-store"
    assert used("--api-key", "explicit", run="c") == "Bearer explicit"
    # a custom variable picks its own stored name: the OpenAI key is never sent to another provider
    env["OTHER_API_KEY"] = "other-env"
    assert used("--api-key-env", "OTHER_API_KEY", run="d") == "Bearer other-env"
    assert used("--api-key-env", "OTHER_API_KEY", "--key-name", "openai", run="e") == "Bearer from-store"


def test_no_key_anywhere_in_the_run_folder_logs_or_errors(tmp_path):
    secret = "sk-LEAKCHECK-7f3a9c2e"
    stored = "sk-STORED-LEAKCHECK-1b2c"
    rules = [FaultRule("refusal", match="refused"), FaultRule("500", match="broken")]
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "fine"}, {"prompt": "refused"}, {"prompt": "broken"}])
    env = clean_env(tmp_path, OPENAI_API_KEY=secret)
    with FakeOpenAIServer(rules=rules) as good, FakeOpenAIServer(api_key="the-right-key") as strict:
        assert cli(["keys", "set", "openai", "--value", stored], env).returncode == 0
        outputs = []
        # explicit key on the command line, verbose logs, some rows failing
        done = cli(["-vv", *t2i_args(inp, tmp_path / "run", good, "--api-key", secret, "--max-retries", "1")], env)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 3  # finished, with the refused and broken rows failed
        # the stored key, rejected by a server that echoes it back in its 401 message
        done = cli(["-vv", *t2i_args(inp, tmp_path / "run401", strict, "--max-retries", "0")], env)
        outputs.append(done.stdout + done.stderr)
        status = cli(["status", str(tmp_path / "run401")], env)
        outputs.append(status.stdout + status.stderr)
        assert all(r.authorization == f"Bearer {stored}" for r in strict.requests)  # it was really sent
    failed = Run(tmp_path / "run401").steps[1].failures()
    assert len(failed) == 3 and all(f["reason"].startswith("HTTP 401") and "***" in f["reason"] for f in failed)
    assert Run(tmp_path / "run").steps[1].failures()[0]["reason"].startswith("HTTP 400")
    for path in list((tmp_path / "run").rglob("*")) + list((tmp_path / "run401").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and stored.encode() not in data, path
    for text in outputs:
        assert secret not in text and stored not in text
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert '"api_key":' not in json.dumps(manifest)


def test_describe_and_step_key_leave_the_key_out(server):
    a = get_serving("openai-images", base_url=server.url, api_key="sk-one")
    b = get_serving("openai-images", base_url=server.url + "/v1/", api_key="sk-two", concurrency=64, timeout=5)
    assert "sk-one" not in json.dumps(a.describe()) and "api_key" not in a.describe()["options"]
    assert a.identity() == b.identity()  # key, URL spelling and run-only options never change the step key
    c = get_serving("openai-images", base_url="https://api.openai.com", api_key="sk-one")
    d = get_serving("openai-images", base_url=server.url, api_key="sk-one", model="dall-e-3")
    assert len({json.dumps(x.identity(), sort_keys=True) for x in (a, c, d)}) == 3  # endpoint and model do
