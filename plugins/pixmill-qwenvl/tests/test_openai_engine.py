"""The ``openai`` engine: qwen-vl against an OpenAI-compatible server (as ``vllm serve`` is), over real
HTTP to a server the tests start, answering in the shapes real models produce."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pixmill.pipeline import StepSpec
from pixmill.plugins import get_registry
from pixmill_testing.openai_server import FakeOpenAIServer

ANSWERS = {
    "clean": '{"rationale": "sharp and on prompt", "prompt_alignment": 9, "visual_quality": 8, "overall": 8.5}',
    "fenced": '```json\n{\n  "rationale": "ok",\n  "prompt_alignment": 7,\n  "visual_quality": 7,\n  "overall": 7\n}\n```',
    "prose": 'The image mostly matches.\n{"rationale": "extra limb", "prompt_alignment": 6, "visual_quality": 3, '
             '"overall": 4}\nOverall it is mediocre.',
    "garbage": "As an AI language model I think this image is nice!!",
}


def _answer(rec):
    return next((text for key, text in ANSWERS.items() if f"a {key} photo" in rec.prompt), "No")


def _serving(server: FakeOpenAIServer, **extra) -> dict:
    return {"serving": "qwen-vl", "engine": "openai", "base_url": server.url, "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "max_retries": 2, **extra}


def _sizes(rec) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(data)).size for data in rec.images]


def test_judge_over_http_parses_real_answer_shapes(pixmill_run, make_png):
    rows = [{"id": key, "prompt": f"a {key} photo", "image": make_png(f"images/{key}.png", size=(64, 48))}
            for key in ANSWERS]
    with FakeOpenAIServer(chat_handler=_answer) as server:
        run = pixmill_run(rows, [StepSpec("judge", _serving(server)),
                                 StepSpec("filter", {"where": "scores.overall >= 7"})])
        sent = list(server.requests)
    done, failed = run.step_by_id(1), run.step_failed(1)
    assert done["clean"]["scores"] == {"overall": 8.5, "prompt_alignment": 9.0, "visual_quality": 8.0,
                                       "rationale": "sharp and on prompt",
                                       "judge": {"serving": "qwen-vl", "model": "Qwen/Qwen2.5-VL-7B-Instruct"}}
    assert done["fenced"]["scores"]["overall"] == 7.0
    assert done["prose"]["scores"]["visual_quality"] == 3.0 and done["prose"]["scores"]["rationale"] == "extra limb"
    assert set(failed) == {"garbage"} and "As an AI language model" in failed["garbage"]
    kept = run.step_by_id(2)
    assert sorted(kept) == ["clean", "fenced"]
    assert {r.model for r in sent} == {"Qwen/Qwen2.5-VL-7B-Instruct"}
    assert all(r.body["temperature"] == 0.0 and r.body["response_format"] == {"type": "json_object"} for r in sent)


def test_every_image_is_its_own_part_resized_to_the_bounds(pixmill_run, make_png):
    rows = [{"id": "multi", "prompt": "a clean photo",
             "image": [make_png("images/a.png", size=(64, 48)), make_png("images/b.png", size=(300, 200)),
                       make_png("images/c.png", size=(20, 20))]}]
    with FakeOpenAIServer(chat_handler=_answer) as server:
        pixmill_run(rows, [StepSpec("judge", _serving(server, min_pixels=28 * 28 * 4,
                                                      max_pixels=28 * 28 * 16))])
        rec = server.requests[0]
    assert rec.image_parts == 3  # never a collage
    sizes = _sizes(rec)
    assert sizes == [(56, 56), (112, 84), (56, 56)]  # multiples of 28 within [min_pixels, max_pixels], aspect kept
    assert all(4 * 784 <= w * h <= 16 * 784 for w, h in sizes)
    assert rec.prompt.index("Generated image 1") < rec.prompt.index("Generated image 3")


def test_transient_server_errors_are_retried_by_the_shared_engine(pixmill_run, make_png):
    rows = [{"id": "r", "prompt": "a clean photo", "image": make_png("images/a.png", size=(32, 32))}]
    with FakeOpenAIServer(chat_handler=_answer, retry_after=0.01) as server:
        server.add_rule("429", index=0)
        server.add_rule("500", index=1)
        run = pixmill_run(rows, [StepSpec("judge", _serving(server))])
        statuses = [r.status for r in server.requests]
    done, failed = run.step_by_id(1), run.step_failed(1)
    assert statuses == [429, 500, 200] and done["r"]["scores"]["overall"] == 8.5 and not failed


def test_a_request_that_keeps_failing_fails_its_row_only(pixmill_run, make_png):
    rows = [{"id": "bad", "prompt": "a clean photo [boom]", "image": make_png("images/a.png", size=(32, 32))},
            {"id": "good", "prompt": "a fenced photo", "image": make_png("images/b.png", size=(32, 32))}]
    with FakeOpenAIServer(chat_handler=_answer) as server:
        server.add_rule("refusal", match="[boom]")
        run = pixmill_run(rows, [StepSpec("judge", _serving(server))])
    done, failed = run.step_by_id(1), run.step_failed(1)
    assert list(done) == ["good"] and "safety system" in failed["bad"]


def test_api_key_is_sent_when_configured_and_never_stored(pixmill_run, make_png, tmp_path):
    rows = [{"id": "r", "prompt": "a clean photo", "image": make_png("images/a.png", size=(32, 32))}]
    with FakeOpenAIServer(chat_handler=_answer, api_key="sk-local-123") as server:
        run = pixmill_run(rows, [StepSpec("judge", _serving(server, api_key="sk-local-123"))])
        assert server.requests[0].authorization == "Bearer sk-local-123"
    done = run.step_by_id(1)
    assert "r" in done
    assert not any("sk-local-123" in p.read_text(errors="ignore") for p in run.out.rglob("*") if p.is_file())


def test_caption_and_vqascore_over_http(pixmill_run, make_png):
    rows = [{"id": "r", "prompt": "a yes photo", "image": make_png("images/a.png", size=(32, 32))}]

    def answer(rec):
        return "Yes" if "Does this image show" in rec.prompt else "A small red square."

    with FakeOpenAIServer(chat_handler=answer) as server:
        run = pixmill_run(rows, [StepSpec("caption", _serving(server)),
                                 StepSpec("judge", _serving(server, mode="vqascore"))])
        vqa = [r for r in server.requests if r.body.get("logprobs")]
    captioned = run.step_by_id(1)
    judged, failed = run.step_by_id(2), run.step_failed(2)
    assert captioned["r"]["caption"] == "A small red square."
    assert not failed and judged["r"]["scores"]["vqascore"] == 1.0 and judged["r"]["scores"]["overall"] == 10.0
    assert len(vqa) == 1 and vqa[0].body["max_tokens"] == 1


def test_json_mode_prompt_sends_no_response_format(pixmill_run, make_png):
    rows = [{"id": "r", "prompt": "a clean photo", "image": make_png("images/a.png", size=(32, 32))}]
    with FakeOpenAIServer(chat_handler=_answer) as server:
        run = pixmill_run(rows, [StepSpec("judge", _serving(server, json_mode="prompt"))])
        assert "response_format" not in server.requests[0].body
    assert run.step_by_id(1)["r"]["scores"]["overall"] == 8.5


def test_step_key_ignores_run_only_and_other_engines_options():
    cls = get_registry().get_serving("qwen-vl")
    base = cls(engine="transformers", model="m").identity()
    assert cls(engine="transformers", model="m", base_url="http://elsewhere:9000", concurrency=64).identity() == base
    assert cls(engine="transformers", model="m", max_pixels=28 * 28 * 64).identity() != base
    http = cls(engine="openai", model="m").identity()
    assert cls(engine="openai", model="m", base_url="http://elsewhere:9000").identity() != http
    assert cls(engine="openai", model="m", timeout=5, max_retries=1).identity() == http


def test_only_the_openai_engine_composes_an_http_connection_with_the_http_layers_options(caplog):
    from pixmill.http import HTTPConnection, endpoint_options

    cls = get_registry().get_serving("qwen-vl")
    declared = {o.name: o for o in cls.options}
    assert {o.name for o in endpoint_options()} <= {n for n, o in declared.items() if o.when == "--engine openai"}
    assert declared["model"].when is None and declared["dtype"].when is None
    assert isinstance(cls(engine="openai", model="m").http, HTTPConnection)
    local = cls(engine="transformers", model="Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://gpu-box:8000")
    assert local.http is None
    with caplog.at_level("WARNING", logger="pixmill.qwenvl"):
        local.check()  # a --base-url without --engine openai would run the model here: say so
    assert "--base-url ignored: used only with --engine openai (this step has --engine transformers)" in caplog.text


def test_help_groups_the_http_options_under_the_openai_engine():
    from click.testing import CliRunner
    from pixmill.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["run", "judge", "--serving", "qwen-vl", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip().startswith("--")}
    for flag in ("--base-url", "--concurrency", "--timeout", "--api-key", "--json-mode", "--upload-format"):
        assert "[qwen-vl] with --engine openai:" in lines[flag], lines[flag]
    assert "with --engine openai" not in lines["--max-pixels"] + lines["--dtype"]


@pytest.mark.parametrize("engine, parallel", [("openai", 32), ("transformers", 1), ("vllm", 1)])
def test_only_the_http_engine_runs_batches_in_parallel(engine, parallel):
    serving = get_registry().get_serving("qwen-vl")(engine=engine, concurrency=32)
    assert serving.parallel_batches == parallel
