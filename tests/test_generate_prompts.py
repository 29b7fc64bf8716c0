"""generate-prompts: an LLM (openai-llm over real HTTP to the fake server) writes descriptions and
edit instructions by category and ratio; validation, de-duplication, re-asking, expansion, resume."""

from __future__ import annotations

import json
import re

import pytest
from helpers import step_rows
from pixmill import Run, get_operator, get_serving
from pixmill.errors import ConfigError
from pixmill.ops.prompts import GeneratePrompts, clean_item, normalize, parse_items
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill_testing.openai_server import FakeOpenAIServer, FaultRule

pytest.importorskip("pixmill_openai", reason="the openai-llm serving comes from pixmill-openai")


def asked(rec) -> tuple[str, int]:
    """(category, count) a generate-prompts request asks for."""
    m = re.search(r'Write exactly (\d+) .*? in the category "([^"]+)"', rec.prompt)
    return m.group(2), int(m.group(1))


def topic_of(rec) -> str:
    m = re.search(r"Context: [^:]+: (.*)", rec.prompt)
    return m.group(1).strip() if m else "anything"


def good_handler(rec):
    cat, n = asked(rec)
    return json.dumps({"items": [f"{cat} idea {i} about {topic_of(rec)}, in a sunny park" for i in range(n)]})


@pytest.fixture
def server():
    with FakeOpenAIServer(chat_handler=good_handler) as srv:
        yield srv


def llm(server, **kw):
    return get_serving("openai-llm", base_url=server.url, api_key="sk-test", **kw)


def run(tmp_path, server, rows=None, name="run", **opts):
    """Run generate-prompts through the real pipeline (input file -> runner -> committed rows)."""
    input_path = None
    if rows is not None:
        input_path = tmp_path / f"{name}.jsonl"
        input_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = PipelineSpec(steps=[StepSpec("generate-prompts", {"serving": "openai-llm", "base_url": server.url,
                                                             "api_key": "sk-test", **opts})],
                        input=input_path, out=tmp_path / name)
    results = run_pipeline(spec)
    return results[-1], step_rows(tmp_path / name, 1)


# -- pure helpers ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, items", [
    ('{"items": ["a b", "c d"]}', ["a b", "c d"]),
    ('```json\n{"prompts": ["x"]}\n```', ["x"]),
    ('["one", {"prompt": "two"}, {"instruction": "three"}, 4]', ["one", "two", "three"]),
    ('Sure! Here you go: {"items": ["late"]} Enjoy.', ["late"]),
    ('{"style": ["by category name"]}', ["by category name"]),
])
def test_parse_items_accepts_the_shapes_llms_produce(text, items):
    assert parse_items(text, "style") == items


@pytest.mark.parametrize("text", ["no json here", '{"a": 1}', '{"a": [1], "b": [2]}', '"just a string"'])
def test_parse_items_rejects_unusable_answers(text):
    with pytest.raises(ValueError):
        parse_items(text)


def test_clean_and_normalize():
    assert clean_item('  1. "Add a red  kite\nto the sky"  ') == "Add a red kite to the sky"
    assert normalize("Add a RED kite, to the sky!") == normalize("add a red kite to the sky")


def test_ratios_split_by_largest_remainder(server):
    op = get_operator("generate-prompts")(serving=llm(server), kind="instruction", num_prompts=10)
    counts = op.targets()
    assert sum(counts.values()) == 10
    assert list(counts) == ["replace", "add", "remove", "style", "background", "subject-driven"]
    assert counts["replace"] >= counts["subject-driven"]
    op = get_operator("generate-prompts")(serving=llm(server), categories="replace:3,add=1", num_prompts=8)
    assert op.targets() == {"replace": 6, "add": 2}
    op = get_operator("generate-prompts")(serving=llm(server), ratios={"cats": 1, "dogs": 3}, num_prompts=4)
    assert op.targets() == {"cats": 1, "dogs": 3}


@pytest.mark.parametrize("num_prompts, expected", [
    (10, {"replace": 5, "add": 3, "remove": 2}),
    (1, {"replace": 1, "add": 0, "remove": 0}),
    (7, {"replace": 4, "add": 2, "remove": 1}),
    (100, {"replace": 50, "add": 30, "remove": 20}),
])
def test_given_ratios_replace_the_built_in_categories(server, num_prompts, expected):
    # Every built-in name, but only three of them weighted: the others must not appear.
    op = get_operator("generate-prompts")(serving=llm(server), kind="instruction", num_prompts=num_prompts,
                                          ratios={"replace": 0.5, "add": 0.3, "remove": 0.2})
    assert op.targets() == expected
    op = get_operator("generate-prompts")(serving=llm(server), kind="instruction", num_prompts=num_prompts,
                                          ratios={"replace": 0.5, "add": 0.3, "sky": 0.2})
    assert set(op.targets()) == {"replace", "add", "sky"}, "an unknown name is a new category"


def test_bad_category_options_are_clear_errors(server, tmp_path):
    Op = get_operator("generate-prompts")
    with pytest.raises(ConfigError, match="ratio 'lots'"):
        Op(serving=llm(server), categories="replace:lots")
    with pytest.raises(ConfigError, match="does not exist"):
        Op(serving=llm(server), categories_file=str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="unknown category 'zzz'"):
        Op(serving=llm(server), categories="replace,add", ratios={"zzz": 1})


# -- through the runner -------------------------------------------------------------------------
def test_expands_each_topic_row_by_category(tmp_path, server):
    rows = [{"id": "t1", "topic": "a lighthouse", "images": ["a.png"]}, {"id": "t2", "topic": "a bakery"}]
    result, out = run(tmp_path, server, rows, kind="instruction", categories="replace:1,add:1,remove:2",
                      num_prompts=4, output_key="instruction")
    assert result.done == 2 and result.failed == 0 and len(out) == 8
    by_parent = {r["id"]: r for r in out}
    assert set(by_parent) == {f"t{p}/{i}" for p in (1, 2) for i in range(4)}
    assert [by_parent[f"t1/{i}"]["category"] for i in range(4)] == ["replace", "add", "remove", "remove"]
    assert by_parent["t1/0"]["images"] == ["a.png"] and by_parent["t1/0"]["topic"] == "a lighthouse"
    assert "a lighthouse" in by_parent["t1/0"]["instruction"]
    # every request asked for JSON, for one category, with the row's topic
    for rec in server.requests:
        assert rec.body["response_format"] == {"type": "json_object"}
    assert sorted(asked(r) for r in server.requests if "bakery" in r.prompt) == [("add", 1), ("remove", 2), ("replace", 1)]


def test_no_input_starts_from_one_seed_row(tmp_path, server):
    result, out = run(tmp_path, server, None, num_prompts=5)
    assert len(out) == 5 and {r["id"] for r in out} == {f"0/{i}" for i in range(5)}
    assert {r["category"] for r in out} == {"people", "animals", "objects", "scenes", "art"}


def test_invalid_and_duplicate_items_are_dropped_and_asked_again(tmp_path):
    calls = {"n": 0}

    def sloppy(rec):
        cat, n = asked(rec)
        calls["n"] += 1
        if calls["n"] == 1:  # duplicates (case/space variants), too short, too long, a non-string
            return json.dumps({"items": ["A red kite over the beach", "a red  KITE over the beach!", "x",
                                         "y" * 900, 42]})
        return json.dumps({"items": [f"fresh idea number {calls['n']}-{i}" for i in range(n)]})

    with FakeOpenAIServer(chat_handler=sloppy) as srv:
        result, out = run(tmp_path, srv, [{"topic": "beach"}], categories="scenes", num_prompts=3)
    texts = [r["prompt"] for r in out]
    assert len(texts) == 3 and len({normalize(t) for t in texts}) == 3
    assert texts[0] == "A red kite over the beach"
    assert all(10 <= len(t) <= 500 for t in texts)
    second = srv.requests[1]
    assert "Write exactly 2" in second.prompt and "Do not repeat any of these: A red kite" in second.prompt


def test_dedupes_across_rows_of_the_step(tmp_path):
    def same_for_everyone(rec):
        cat, n = asked(rec)
        k = len(same_for_everyone.seen)
        same_for_everyone.seen.append(1)
        base = ["a cat on a sofa", "a dog in the rain"] if k < 2 else [f"new scene {k}-{i} at dusk" for i in range(n)]
        return json.dumps({"items": base[:n] if k < 2 else base})

    same_for_everyone.seen = []
    with FakeOpenAIServer(chat_handler=same_for_everyone) as srv:
        result, out = run(tmp_path, srv, [{"topic": "a"}, {"topic": "b"}], categories="animals", num_prompts=2,
                          batch_size=2)
    keys = [normalize(r["prompt"]) for r in out]
    assert len(out) == 4 and len(set(keys)) == 4


def test_unusable_answers_fail_the_row_with_the_reason(tmp_path):
    with FakeOpenAIServer(chat_handler=lambda rec: "I'd rather write a poem.") as srv:
        result, out = run(tmp_path, srv, [{"topic": "x"}], categories="art", num_prompts=2, max_rounds=2)
    assert result.failed == 1 and out == []
    failed = Run(tmp_path / "run").step(1).failures()
    assert "no valid item" in failed[0]["reason"] and "poem" in failed[0]["reason"]
    assert len(srv.requests) == 2  # asked max_rounds times, then gave up


def test_llm_errors_fail_only_that_row(tmp_path, server):
    server.rules.append(FaultRule("refusal", match="forbidden"))
    result, out = run(tmp_path, server, [{"topic": "forbidden topic"}, {"topic": "gardens"}], num_prompts=3,
                      categories="scenes")
    assert result.done == 1 and result.failed == 1 and len(out) == 3
    reason = Run(tmp_path / "run").step(1).failures()[0]["reason"]
    assert "HTTP 400" in reason and "safety system" in reason


def test_categories_file_with_descriptions_examples_and_kind(tmp_path, server):
    cats = tmp_path / "cats.yaml"
    cats.write_text("kind: instruction\ninstructions: Write in British English.\ncategories:\n"
                    "  relight:\n    ratio: 3\n    description: change the lighting only\n"
                    "    examples: [make it golden hour]\n  remove: 1\n")
    result, out = run(tmp_path, server, [{"topic": "a kitchen"}], categories_file=str(cats), num_prompts=4)
    assert [r["category"] for r in out] == ["relight"] * 3 + ["remove"]
    relight = next(r for r in server.requests if "relight" in r.prompt)
    assert "change the lighting only" in relight.prompt and "make it golden hour" in relight.prompt
    assert "British English" in relight.prompt and "editing instructions" in relight.prompt
    # editing the file changes the step key: the step recomputes
    op1 = GeneratePrompts(serving=llm(server), categories_file=str(cats))
    cats.write_text(cats.read_text().replace("ratio: 3", "ratio: 1"))
    op2 = GeneratePrompts(serving=llm(server), categories_file=str(cats))
    assert op1.identity() != op2.identity()


def test_rerun_is_cached(tmp_path, server):
    rows = [{"topic": f"topic {i}"} for i in range(3)]
    run(tmp_path, server, rows, num_prompts=2, categories="art")
    n = len(server.requests)
    result, out = run(tmp_path, server, rows, num_prompts=2, categories="art")
    assert result.cached and len(server.requests) == n and len(out) == 6


def test_a_later_run_dedupes_against_what_earlier_runs_committed(tmp_path):
    def handler(rec):
        handler.calls += 1
        if "Do not repeat" not in rec.prompt:
            return json.dumps({"items": ["a shared first idea", "a shared second idea"]})
        return json.dumps({"items": [f"unique idea {handler.calls}-{i}" for i in range(2)]})

    handler.calls = 0
    rows = [{"id": "a", "topic": "aaa"}, {"id": "b", "topic": "bbb"}]
    with FakeOpenAIServer(chat_handler=handler, rules=[FaultRule("refusal", match="bbb", times=1)]) as srv:
        first, _ = run(tmp_path, srv, rows, num_prompts=2, categories="art")
        assert (first.done, first.failed) == (1, 1)
        spec_rows = dict(num_prompts=2, categories="art")
        input_path = tmp_path / "run.jsonl"
        spec = PipelineSpec(steps=[StepSpec("generate-prompts", {"serving": "openai-llm", "base_url": srv.url,
                                                                 "api_key": "k", **spec_rows})],
                            input=input_path, out=tmp_path / "run", retry_failed=True)
        second = run_pipeline(spec)[-1]
    assert (second.done, second.failed) == (2, 0)
    out = step_rows(tmp_path / "run", 1)
    by_parent = {p: [r["prompt"] for r in out if r["id"].startswith(p + "/")] for p in "ab"}
    assert by_parent["a"] == ["a shared first idea", "a shared second idea"]
    assert not set(map(normalize, by_parent["a"])) & set(map(normalize, by_parent["b"]))


def test_python_api(tmp_path, server):
    from pixmill import Storage

    (tmp_path / "topics.jsonl").write_text('{"topic": "mountains"}\n')
    with Storage(input=tmp_path / "topics.jsonl", out=tmp_path / "api") as storage:
        Op = get_operator("generate-prompts")
        result = Op(serving=llm(server), num_prompts=3, categories="scenes:1").run(
            storage.step(), output_key="description")
        rows = storage.read()
    assert result.done == 1 and len(rows) == 3
    assert all("mountains" in r["description"] and r["category"] == "scenes" for r in rows)
