"""Hostile or odd endpoints and settings: huge answers, query strings in the base URL, keys given
with the wrong type."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from pixmill import Run
from pixmill.errors import ConfigError
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill_testing import png, write_jsonl
from pixmill_testing.openai_server import FakeOpenAIServer, FaultRule


def _generate(tmp_path, base_url: str, n: int = 3, **opts):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "prompt": f"row {i}"} for i in range(n)])
    spec = PipelineSpec(steps=[StepSpec("generate-images", {"serving": "openai-images", "base_url": base_url,
                                                            "api_key": "sk-test", **opts})],
                        input=inp, out=tmp_path / "run")
    return run_pipeline(spec)[-1]


@pytest.mark.parametrize("fault", ["huge", "huge_url"])
def test_an_endless_answer_fails_its_row_once_without_filling_memory(tmp_path, fault):
    rules = [FaultRule(fault, match="row 1")]
    with FakeOpenAIServer(rules=rules) as server:
        result = _generate(tmp_path, server.url, max_response_mb=2, max_retries=3)
        attempts = len(server.requests_for("row 1"))
        sent = list(server.huge_sent)
    assert (result.done, result.failed) == (2, 1)
    (failure,) = Run(tmp_path / "run").steps[1].failures()
    assert failure["id"] == "r1" and "larger than 2 MiB" in failure["reason"]
    assert "--max-response-mb" in failure["reason"]
    assert attempts == 1  # the same request would get the same answer: not retried
    # The client hung up soon after the cap (socket buffers hold a few MiB), not after 1 GiB.
    assert sent and max(sent) < 64 * 1024**2


def test_a_base_url_with_a_query_string_keeps_it_on_every_request(tmp_path):
    with FakeOpenAIServer() as server:
        result = _generate(tmp_path, server.url + "/v1?api-version=2024-10-21")
        queries = [parse_qs(r.query) for r in server.requests]
    assert (result.done, result.failed) == (3, 0)
    assert queries and all(q == {"api-version": ["2024-10-21"]} for q in queries)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "api-version" not in json.dumps(manifest)  # a query may carry a credential: kept out of files


def test_an_api_key_of_the_wrong_type_is_never_printed(tmp_path):
    secret = "sk-live-THIS-MUST-NOT-APPEAR"
    with pytest.raises(ConfigError) as err:
        _generate(tmp_path, "http://127.0.0.1:9", api_key=[secret, "second"])
    assert "api-key" in str(err.value) and "hidden" in str(err.value)
    assert secret not in str(err.value)


def _rows_naming_outside_files(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    png(data / "ok.png", size=(48, 32))
    private = png(outside / "private.png", color=(1, 2, 3), size=(48, 32))
    (data / "link.png").symlink_to(private)
    rows = [{"id": "ok", "instruction": "make it blue", "images": ["ok.png"]},
            {"id": "abs", "instruction": "make it blue", "images": [str(private)]},
            {"id": "link", "instruction": "make it blue", "images": ["link.png"]}]
    return write_jsonl(data / "in.jsonl", rows), outside, private.read_bytes()


@pytest.mark.parametrize("allowed", [False, True])
def test_edit_images_uploads_only_files_in_allowed_folders(tmp_path, allowed):
    inp, outside, private = _rows_naming_outside_files(tmp_path)
    spec = PipelineSpec(steps=[StepSpec("edit-images", {"serving": "openai-images", "api_key": "sk-test"})],
                        input=inp, out=tmp_path / "run", allow_roots=[str(outside)] if allowed else [])
    with FakeOpenAIServer() as server:
        spec.steps[0].options["base_url"] = server.url
        result = run_pipeline(spec)[-1]
        uploaded = [img for r in server.requests for img in r.images]
    if allowed:
        assert (result.done, result.failed) == (3, 0)
        return
    assert (result.done, result.failed) == (1, 2)
    assert len(uploaded) == 1 and private not in uploaded
    reasons = {f["id"]: f["reason"] for f in Run(tmp_path / "run").steps[1].failures()}
    assert set(reasons) == {"abs", "link"}
    assert all("outside the run and input folders" in r and "--allow-root" in r for r in reasons.values())


def test_judge_uploads_only_files_in_allowed_folders(tmp_path):
    inp, _, private = _rows_naming_outside_files(tmp_path)
    spec = PipelineSpec(steps=[StepSpec("judge", {"serving": "openai-llm", "api_key": "sk-test",
                                                  "image_key": "images"})], input=inp, out=tmp_path / "run")
    with FakeOpenAIServer(chat_handler=lambda rec: '{"overall": 7, "rationale": "fine"}') as server:
        spec.steps[0].options["base_url"] = server.url
        run_pipeline(spec)
        uploaded = [img for r in server.requests for img in r.images]
    assert len(uploaded) == 1 and private not in uploaded  # only the allowed row reached the API
    reasons = {f["id"]: f["reason"] for f in Run(tmp_path / "run").steps[1].failures()}
    assert "outside the run and input folders" in reasons["abs"] and "outside" in reasons["link"]
