"""The model-agnostic ``judge`` and ``caption`` operators, rubrics and answer parsing.

Operators run through the real pipeline runner with the ``openai-llm`` vision-chat serving over real
HTTP against the fake OpenAI-compatible server, whose answers take the shapes real models produce.
(The ``qwen-vl`` engines have their own tests in plugins/pixmill-qwenvl/tests.)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers import step_rows
from PIL import Image
from pixmill.errors import ConfigError
from pixmill.ops.judge import Judge, yes_probability
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill.plugins import get_registry
from pixmill.rubrics import BUILTIN_RUBRICS, load_rubric, parse_rubric
from pixmill.rubrics.parse import JudgmentError, find_json_object, parse_judgment
from pixmill_testing import png
from pixmill_testing.openai_server import FakeOpenAIServer

T2I = load_rubric("t2i")


# -- answer parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    '{"rationale": "fine", "prompt_alignment": 8, "visual_quality": 6, "overall": 7}',
    '```json\n{"rationale": "fine", "prompt_alignment": 8, "visual_quality": 6, "overall": 7}\n```',
    'Here is my judgment:\n{"rationale": "fine", "prompt_alignment": 8, "visual_quality": 6, "overall": 7}\nThanks!',
    '{"scores": {"Prompt Alignment": "8/10", "visual-quality": 6}, "overall_score": 7, "reasoning": "fine"}',
    "{'rationale': 'fine', 'prompt_alignment': 8, 'visual_quality': 6, 'overall': 7,}",
    '{"rationale": "fine", "prompt_alignment": {"score": 8}, "visual_quality": 6.0, "overall": "7"}',
])
def test_parse_judgment_accepts_the_shapes_models_write(answer):
    got = parse_judgment(answer, T2I)
    assert got == {"overall": 7.0, "prompt_alignment": 8.0, "visual_quality": 6.0, "rationale": "fine"}


def test_parse_judgment_computes_overall_and_converts_other_scales():
    got = parse_judgment('{"prompt_alignment": "85/100", "visual_quality": 6}', T2I)
    assert got["prompt_alignment"] == pytest.approx(8.5)
    assert got["overall"] == pytest.approx(7.25)  # mean of the sub-scores when the model gives none
    assert got["rationale"] == ""


def test_parse_judgment_skips_non_json_braces_before_the_object():
    answer = 'I considered {style} and {composition}. {"prompt_alignment": 9, "visual_quality": 9, "overall": 9}'
    assert parse_judgment(answer, T2I)["overall"] == 9.0


@pytest.mark.parametrize("answer, why", [
    ("The image is great, 9/10.", "no JSON object"),
    ('{"prompt_alignment": 8, "visual_quality": 7, "overall": 8, "rationale": "the dog is', "cut off"),
    ('{"prompt_alignment": 8, "overall": 8}', "no score 'visual_quality'"),
    ('{"prompt_alignment": 85, "visual_quality": 7}', "outside 0-10"),
    ('{"prompt_alignment": "great", "visual_quality": 7}', "not a number"),
    ('{"prompt_alignment": true, "visual_quality": 7}', "not a number"),
])
def test_parse_judgment_rejects_unusable_answers_with_a_reason(answer, why):
    with pytest.raises(JudgmentError, match=why):
        parse_judgment(answer, T2I)


def test_find_json_object_prefers_the_fenced_block():
    text = 'Example: {"a": 0}\n```json\n{"a": 1}\n```'
    assert find_json_object(text) == {"a": 1}


def test_yes_probability_sums_token_variants_and_normalises():
    logprobs = [{"Yes": -0.5, " yes": -2.0, "No": -1.5, "Maybe": -3.0}]
    import math

    p_yes = math.exp(-0.5) + math.exp(-2.0)
    assert yes_probability(logprobs) == pytest.approx(p_yes / (p_yes + math.exp(-1.5)))
    # a leading whitespace token is skipped to the first position that holds yes/no
    assert yes_probability([{"\n": -0.1}, {"No": -0.01}]) == 0.0
    with pytest.raises(JudgmentError, match="no logprobs"):
        yes_probability(None)
    with pytest.raises(JudgmentError, match="no yes/no"):
        yes_probability([{"Perhaps": -0.1}])


# -- rubrics --------------------------------------------------------------------------------------
def test_builtin_rubrics_declare_their_scores_and_images():
    assert set(BUILTIN_RUBRICS) == {"t2i", "edit", "multi-image"}
    assert list(T2I.scores) == ["prompt_alignment", "visual_quality"] and not T2I.needs_source
    edit = load_rubric("edit")
    assert list(edit.scores) == ["instruction_following", "preservation", "quality"]
    assert list(edit.images) == ["source", "output"]
    multi = load_rubric("multi-image")
    assert list(multi.scores) == ["subject_preservation", "composition"] and multi.needs_source
    text = edit.render("make it blue")
    assert '"make it blue"' in text and '"instruction_following": <0-10>' in text and "{" + "criteria}" not in text


def test_custom_rubric_keeps_literal_braces_and_appends_the_format(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text('scores: [realism]\nprompt: |\n  Prompt: {prompt}. Example: {"x": 1}\n')
    rubric = load_rubric(str(path))
    text = rubric.render("a cat")
    assert 'Prompt: a cat. Example: {"x": 1}' in text
    assert text.rstrip().endswith('{"rationale": "<one or two sentences>", "realism": <0-10>, "overall": <0-10>}')


@pytest.mark.parametrize("text, message", [
    ("scores: [a]\n", "no `prompt:`"),
    ("prompt: hi\n", "needs `scores:`"),
    ("prompt: hi\nscores: [Overall]\n", "bad sub-score name"),
    ("prompt: hi\nscores: [a]\nimages: {reference: x}\n", "include output"),
    ("prompt: hi\nscores: [a]\ncolour: red\n", "unknown key 'colour'"),
    ("prompt: [unclosed\n", "not valid YAML"),
])
def test_bad_rubric_files_fail_with_the_fix(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_rubric(text, origin="r.yaml")


def test_unknown_rubric_names_the_builtins():
    with pytest.raises(ConfigError, match="t2i, edit, multi-image"):
        load_rubric("nope")


def test_edit_rubric_without_source_key_fails_before_any_work():
    with pytest.raises(ConfigError, match="--source-key"):
        Judge(rubric="edit")


# -- operators end to end -------------------------------------------------------------------------
@pytest.fixture
def vision_chat():
    if "openai-llm" not in get_registry().names("servings"):
        pytest.skip("the openai-llm serving (pixmill-openai) is not installed")


def _png(path: Path, colour: tuple[int, int, int]) -> str:
    return png(path, colour, (40, 30)).name


def _colours(rec) -> list[tuple[int, int, int]]:
    return [Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0)) for data in rec.images]


def _run(tmp_path: Path, rows: list[dict], steps: list[StepSpec], name: str = "run"):
    inp = tmp_path / "input.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / name
    results = run_pipeline(PipelineSpec(steps=steps, input=inp, out=out))
    return results, out


def _rows(out: Path, result) -> list[dict]:
    return step_rows(out, result.index)


def _failed(out: Path, result) -> dict[str, str]:
    path = out / result.folder / "failed.jsonl"
    if not path.exists():
        return {}
    return {json.loads(line)["id"]: json.loads(line)["reason"] for line in path.read_text().splitlines() if line}


def _serving(server: FakeOpenAIServer) -> dict:
    return {"serving": "openai-llm", "model": "gpt-4o", "base_url": server.base_url, "api_key": "test"}


ANSWERS = {
    "clean": '{"rationale": "matches", "prompt_alignment": 9, "visual_quality": 8, "overall": 9}',
    "fenced": '```json\n{"rationale": "ok", "prompt_alignment": 7, "visual_quality": 7, "overall": 7}\n```',
    "prose": 'Sure. {"rationale": "weak", "prompt_alignment": 2, "visual_quality": 6, "overall": 3} Let me know!',
    "garbage": "I cannot rate this image, sorry.",
}


def _by_keyword(rec):
    return next((answer for key, answer in ANSWERS.items() if f"a {key} scene" in rec.prompt), None)


def test_judge_t2i_scores_every_shape_fails_garbage_and_filters(tmp_path, vision_chat):
    images = tmp_path / "images"
    rows = [{"id": k, "prompt": f"a {k} scene", "image": "images/" + _png(images / f"{k}.png", (10 * i, 0, 0))}
            for i, k in enumerate(ANSWERS)]
    with FakeOpenAIServer(chat_handler=_by_keyword) as server:
        results, out = _run(tmp_path, rows, [StepSpec("judge", _serving(server)),
                                             StepSpec("filter", {"where": "scores.overall >= 7"})])
        sent = list(server.requests)
    judged = {r["id"]: r["scores"] for r in _rows(out, results[1])}
    assert judged["clean"] == {"overall": 9.0, "prompt_alignment": 9.0, "visual_quality": 8.0, "rationale": "matches",
                               "judge": {"serving": "openai-llm", "model": "gpt-4o"}}
    assert judged["fenced"]["overall"] == 7.0 and judged["prose"]["overall"] == 3.0
    failed = _failed(out, results[1])
    assert set(failed) == {"garbage"}
    assert "unparsable" in failed["garbage"] and "I cannot rate this image, sorry." in failed["garbage"]
    assert sorted(r["id"] for r in _rows(out, results[2])) == ["clean", "fenced"]
    # one request per row, the row's image as one image_url part, JSON mode asked, the prompt in the text
    assert len(sent) == 4 and all(r.image_parts == 1 for r in sent)
    assert all(r.body.get("response_format") == {"type": "json_object"} for r in sent)
    assert '"a clean scene"' in next(r.prompt for r in sent if "clean" in r.prompt)


def test_judge_reads_dataflow_mm_conversations_and_fails_bad_rows_alone(tmp_path, vision_chat):
    _png(tmp_path / "images" / "ok.png", (0, 200, 0))
    rows = [
        {"id": "ok", "image": ["images/ok.png"], "conversations": [{"role": "user", "content": "a clean scene"}]},
        {"id": "missing-file", "image": "images/nope.png", "conversations": [{"role": "user", "content": "a clean scene"}]},
        {"id": "no-image-field", "conversations": [{"role": "user", "content": "a clean scene"}]},
        {"id": "empty-path", "image": [""], "prompt": "a clean scene"},
    ]
    with FakeOpenAIServer(chat_handler=_by_keyword) as server:
        results, out = _run(tmp_path, rows, [StepSpec("judge", _serving(server))])
        assert len(server.requests) == 1  # bad rows never reach the model
    assert [r["id"] for r in _rows(out, results[1])] == ["ok"]
    failed = _failed(out, results[1])
    assert "images/nope.png" in failed["missing-file"] and "not found" in failed["missing-file"]
    assert "no image in edited_images, images, image" in failed["no-image-field"]
    assert "--image-key" in failed["no-image-field"]
    assert "no image in" in failed["empty-path"]


def test_judge_edit_shows_source_then_edited_image(tmp_path, vision_chat):
    src = _png(tmp_path / "images" / "src.png", (255, 0, 0))
    dst = _png(tmp_path / "images" / "dst.png", (0, 0, 255))
    rows = [{"id": "e", "instruction": "make it blue", "images": [f"images/{src}"], "edited_image": f"images/{dst}"}]
    answer = '{"rationale": "done", "instruction_following": 9, "preservation": 8, "quality": 7}'
    with FakeOpenAIServer(chat_handler=lambda rec: answer) as server:
        results, out = _run(tmp_path, rows, [StepSpec("judge", {**_serving(server), "rubric": "edit",
                                                                 "source_key": "images", "image_key": "edited_image"})])
        rec = server.requests[0]
    scores = _rows(out, results[1])[0]["scores"]
    assert scores["instruction_following"] == 9.0 and scores["preservation"] == 8.0 and scores["quality"] == 7.0
    assert scores["overall"] == 8.0  # the mean, as the model gave no overall
    assert _colours(rec) == [(255, 0, 0), (0, 0, 255)]  # source first, then the edit
    assert rec.prompt.index("Source image") < rec.prompt.index("Edited image") and '"make it blue"' in rec.prompt


def test_judge_multi_image_sends_every_reference_and_the_composition(tmp_path, vision_chat):
    refs = [_png(tmp_path / "images" / f"r{i}.png", c) for i, c in enumerate([(255, 0, 0), (0, 255, 0)])]
    out_img = _png(tmp_path / "images" / "out.png", (0, 0, 255))
    rows = [{"id": "m", "prompt": "the cat wearing the hat", "images": [f"images/{r}" for r in refs],
             "image": f"images/{out_img}"}]
    answer = '{"subject_preservation": 6, "composition": 4, "overall": 5, "rationale": "hat floats"}'
    with FakeOpenAIServer(chat_handler=lambda rec: answer) as server:
        results, out = _run(tmp_path, rows, [StepSpec("judge", {**_serving(server), "rubric": "multi-image",
                                                                 "source_key": "images", "image_key": "image"})])
        rec = server.requests[0]
    assert _rows(out, results[1])[0]["scores"]["subject_preservation"] == 6.0
    assert _colours(rec) == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert "Reference image 1" in rec.prompt and "Reference image 2" in rec.prompt and "Composed image" in rec.prompt


def test_custom_rubric_file_scores_and_its_edits_recompute(tmp_path, vision_chat):
    _png(tmp_path / "images" / "a.png", (1, 2, 3))
    rubric = tmp_path / "realism.yaml"
    rubric.write_text("scores:\n  realism: could it be a photo?\nprompt: |\n  Judge realism of {prompt}.\n  {format}\n")
    rows = [{"id": "a", "prompt": "a clean scene", "image": "images/a.png"}]
    with FakeOpenAIServer(chat_handler=lambda rec: '{"realism": 6, "rationale": "plastic skin"}') as server:
        step = StepSpec("judge", {**_serving(server), "rubric": str(rubric), "output_key": "quality"})
        results, out = _run(tmp_path, rows, [step])
        assert _rows(out, results[1])[0]["quality"] == {"overall": 6.0, "realism": 6.0, "rationale": "plastic skin",
                                                        "judge": {"serving": "openai-llm", "model": "gpt-4o"}}
        assert "Judge realism of a clean scene." in server.requests[0].prompt
        _run(tmp_path, rows, [step])
        assert len(server.requests) == 1  # unchanged rubric: cached
        rubric.write_text(rubric.read_text().replace("realism of", "the realism of"))
        _run(tmp_path, rows, [step])
        assert len(server.requests) == 2  # edited rubric file: recomputed


def test_judge_vqascore_reads_yes_probability_from_logprobs(tmp_path, vision_chat):
    _png(tmp_path / "images" / "a.png", (1, 2, 3))
    rows = [{"id": "y", "prompt": "a red cube", "image": "images/a.png"},
            {"id": "n", "prompt": "a blue ball", "image": "images/a.png"}]
    with FakeOpenAIServer(chat_handler=lambda rec: "Yes" if "red cube" in rec.prompt else "No") as server:
        results, out = _run(tmp_path, rows, [StepSpec("judge", {**_serving(server), "mode": "vqascore"})])
        bodies = [r.body for r in server.requests]
        prompts = [r.prompt for r in server.requests]
    scores = {r["id"]: r["scores"] for r in _rows(out, results[1])}
    assert scores["y"]["overall"] == 10.0 and scores["y"]["vqascore"] == 1.0
    assert scores["n"]["overall"] == 0.0
    assert all(b["logprobs"] is True and b["max_tokens"] == 1 for b in bodies)
    assert 'Does this image show "a red cube"? Please answer yes or no.' in prompts


def test_caption_writes_a_string_per_image_and_a_list_for_several(tmp_path, vision_chat):
    a = _png(tmp_path / "images" / "a.png", (255, 0, 0))
    b = _png(tmp_path / "images" / "b.png", (0, 255, 0))
    rows = [{"id": "one", "image": [f"images/{a}"]}, {"id": "two", "image": [f"images/{a}", f"images/{b}"]}]

    def describe(rec):
        return "a red square" if _colours(rec) == [(255, 0, 0)] else "a green square"

    with FakeOpenAIServer(chat_handler=describe) as server:
        results, out = _run(tmp_path, rows, [StepSpec("caption", {**_serving(server), "prompt": "What is shown?"})])
        assert len(server.requests) == 3 and all("What is shown?" in r.prompt for r in server.requests)
    captions = {r["id"]: r["caption"] for r in _rows(out, results[1])}
    assert captions == {"one": "a red square", "two": ["a red square", "a green square"]}
