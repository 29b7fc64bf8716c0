"""check-prompts: whole-word, case- and accent-insensitive block lists; moderation over real HTTP
against the loopback OpenAI-compatible server, 429 and 500 retried."""

from __future__ import annotations

import pytest
from pixmill.errors import ConfigError
from pixmill.pipeline import StepSpec
from pixmill_safety.blocklist import BlockList, normalize
from pixmill_testing import read_jsonl
from pixmill_testing.openai_server import FakeOpenAIServer, FaultRule


def test_matches_are_whole_word_and_ignore_case_and_accents(tmp_path):
    listing = tmp_path / "mine.txt"
    listing.write_text("# my list\n[weapons]\nbazooka\nlaser gun  # a phrase\nre:grenade\\w*\n", encoding="utf-8")
    blocks = BlockList.load([listing], builtin=False)
    assert blocks.match("A BAZOOKA at dawn") == {"weapons": ["bazooka"]}
    assert blocks.match("Bazoóka, then a Laser   Gun") == {"weapons": ["bazooka", "laser gun"]}
    assert blocks.match("GRENADES everywhere") == {"weapons": ["grenades"]}
    assert blocks.match("bazookas and megabazooka and laser-gunner") == {}  # not whole words
    assert normalize("Ｎüde  Ｃafé") == "nude cafe"  # full-width letters and accents unified


def test_builtin_list_flags_and_drop_records_the_words(tmp_path, pixmill_run):
    rows = [{"prompt": "a cat on a sofa"}, {"prompt": "A NÜDE figure, gory scene"},
            {"conversations": [{"role": "user", "content": "a nudibranch in the sea"}]}, {"caption": "no prompt"}]
    run = pixmill_run(rows, [StepSpec("check-prompts", {})])
    out, folder = run.rows, run.folder
    verdicts = {r["id"]: r["prompt_check"] for r in out}
    assert verdicts["0"] == {"flagged": False, "categories": [], "matches": {}}
    assert verdicts["1"]["flagged"] and verdicts["1"]["categories"] == ["sexual", "violence"]
    assert verdicts["1"]["matches"] == {"sexual": ["nude"], "violence": ["gory"]}
    assert not verdicts["2"]["flagged"]
    assert "--input-key" in read_jsonl(folder / "failed.jsonl")[0]["reason"]
    run = pixmill_run(rows[:3], [StepSpec("check-prompts", {"drop": True})], name="dropped")
    out, folder = run.rows, run.folder
    assert [r["id"] for r in out] == ["0", "2"]
    dropped = read_jsonl(folder / "dropped.jsonl")
    assert dropped[0]["id"] == "1" and "nude" in dropped[0]["reason"]
    assert dropped[0]["prompt_check"]["categories"] == ["sexual", "violence"]


def test_a_missing_or_bad_list_is_a_config_error(tmp_path, pixmill_run):
    with pytest.raises(ConfigError, match="cannot be read"):
        pixmill_run([{"prompt": "x"}], [StepSpec("check-prompts", {"blocklist": [str(tmp_path / "nope.txt")]})])
    bad = tmp_path / "bad.txt"
    bad.write_text("re:(unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.txt:1"):
        pixmill_run([{"prompt": "x"}], [StepSpec("check-prompts", {"blocklist": [str(bad)]})])


def test_moderation_over_http_with_429_and_500_retried(tmp_path, pixmill_run):
    rules = [FaultRule("429", index=0), FaultRule("500", index=1)]
    with FakeOpenAIServer(rules=rules, retry_after=0.01) as server:
        rows = [{"prompt": "a quiet lake"}, {"prompt": "he will kill the dragon"}, {"prompt": "you idiot"}]
        opts = {"serving": "openai-moderation", "base_url": server.url, "api_key": "test", "builtin": False,
                "texts_per_request": 2}
        run = pixmill_run(rows, [StepSpec("check-prompts", opts)])
        out, folder = run.rows, run.folder
        statuses = [r.status for r in server.requests]
    assert not (folder / "failed.jsonl").exists()
    verdicts = {r["id"]: r["prompt_check"] for r in out}
    assert not verdicts["0"]["flagged"] and verdicts["1"]["categories"] == ["violence"]
    assert verdicts["2"]["categories"] == ["harassment"] and verdicts["1"]["moderation"]["violence"] > 0.9
    assert statuses.count(429) == 1 and statuses.count(500) == 1 and statuses.count(200) == 2


def test_moderation_gives_up_on_the_row_not_the_run(tmp_path, pixmill_run):
    with FakeOpenAIServer(rules=[FaultRule("500", match="storm")]) as server:
        rows = [{"prompt": "a storm at sea"}, {"prompt": "a calm sea"}]
        opts = {"serving": "openai-moderation", "base_url": server.url, "api_key": "test", "max_retries": 1,
                "texts_per_request": 1}
        run = pixmill_run(rows, [StepSpec("check-prompts", opts)])
        out, folder = run.rows, run.folder
    assert [r["id"] for r in out] == ["1"]
    reason = read_jsonl(folder / "failed.jsonl")[0]["reason"]
    assert "moderation failed" in reason and "500" in reason
