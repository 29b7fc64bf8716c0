"""template, filter, head, dedupe through the real runner, including resume of stateful operators."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import read_jsonl, step_rows, write_jsonl
from pixmill.errors import ConfigError
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline


def run(tmp_path: Path, rows: list[dict], *steps: StepSpec, out: str = "run", **kw) -> list[dict]:
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    results = run_pipeline(PipelineSpec(steps=list(steps), input=inp, out=tmp_path / out, **kw))
    return step_rows(tmp_path / out, results[-1].index)


def test_template_reads_conversations_nested_fields_and_format_specs(tmp_path):
    rows = [{"conversations": [{"role": "system", "content": "ignored"}, {"role": "user", "content": "a fox"}],
             "meta": {"style": "ink"}, "w": 512}]
    out = run(tmp_path, rows, StepSpec("template", {"template": "{conversations} in {meta.style}, {w:>5}px"}))
    assert out[0]["prompt"] == "a fox in ink,   512px"


def test_template_missing_field_fails_the_row_or_formats_empty(tmp_path):
    rows = [{"subject": "cat", "style": "oil"}, {"subject": "dog"}]
    out = run(tmp_path, rows, StepSpec("template", {"template": "{subject}, {style}"}))
    assert [r["prompt"] for r in out] == ["cat, oil"]
    failed = read_jsonl(tmp_path / "run" / "01-template" / "failed.jsonl")
    assert failed[0]["reason"] == "template: row has no field 'style'"
    out = run(tmp_path, rows, StepSpec("template", {"template": "{subject}, {style}", "missing": "empty"}), out="run2")
    assert [r["prompt"] for r in out] == ["cat, oil", "dog, "]


def test_template_with_unbalanced_braces_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="balance the"):
        run(tmp_path, [{"a": 1}], StepSpec("template", {"template": "{a"}))


def test_dedupe_keeps_first_occurrence_case_insensitively(tmp_path):
    rows = [{"p": "A cat"}, {"p": "a  CAT"}, {"p": "a dog"}, {"p": "A cat"}]
    out = run(tmp_path, rows, StepSpec("dedupe", {"key": "p", "ignore_case": True}))
    assert [r["p"] for r in out] == ["A cat", "a dog"]
    out = run(tmp_path, rows, StepSpec("dedupe", {"key": "p"}), out="run2")
    assert [r["p"] for r in out] == ["A cat", "a  CAT", "a dog"]


def test_head_and_dedupe_resume_from_committed_rows(tmp_path):
    """A stateful step that is re-run over more upstream rows continues where it stopped."""
    rows = [{"p": f"x{i % 7}"} for i in range(30)]
    steps = [StepSpec("filter", {"where": "p != 'x6'"}), StepSpec("dedupe", {"key": "p"}), StepSpec("head", {"n": 4})]
    out = run(tmp_path, rows, *steps)
    assert [r["p"] for r in out] == ["x0", "x1", "x2", "x3"]
    # Widen the filter: the filter recomputes, dedupe and head see a new upstream and recompute too,
    # and the result is exactly what a fresh run gives.
    steps[0].options["where"] = "p != 'x0'"
    out = run(tmp_path, rows, *steps)
    fresh = run(tmp_path, rows, *steps, out="fresh")
    assert out == fresh and [r["p"] for r in out] == ["x1", "x2", "x3", "x4"]


def test_filter_keeps_matching_rows(tmp_path):
    rows = [{"scores": {"overall": s}, "width": w} for s, w in [(9, 1024), (5, 1024), (8, 256), (7, 512)]]
    out = run(tmp_path, rows, StepSpec("filter", {"where": "scores.overall >= 7 and width >= 512"}))
    assert [r["id"] for r in out] == ["0", "3"]
