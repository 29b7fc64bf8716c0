"""The example pipelines in example_data/judge/: they validate, and the evaluation one runs end to end
against an OpenAI-compatible server standing in for `vllm serve`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pixmill import Run
from pixmill.pipeline import PipelineSpec, build_operator, run_pipeline
from pixmill.plugins import get_registry
from pixmill_testing.openai_server import FakeOpenAIServer

EXAMPLES = Path(__file__).resolve().parents[3] / "example_data" / "judge"


@pytest.mark.parametrize("name", ["pipeline.yaml", "judge-eval.yaml"])
def test_example_pipelines_validate(name):
    spec = PipelineSpec.from_yaml(EXAMPLES / name)
    registry = get_registry()
    if name == "pipeline.yaml" and "flux" not in registry.names("servings"):
        pytest.skip("the flux serving (pixmill-diffusers) is not installed")
    operators = [build_operator(registry, s.operator, s.options) for s in spec.steps]
    assert any(op.name == "judge" and op.serving.name == "qwen-vl" for op in operators)
    assert (spec.input).exists()


def test_custom_rubric_example_loads():
    from pixmill.rubrics import load_rubric

    rubric = load_rubric(str(EXAMPLES / "rubric-photorealism.yaml"))
    assert list(rubric.scores) == ["realism", "lighting"]


def _model_answer(rec) -> str:
    """What a good VLM says about the example images (the mismatch row's prompt names a yellow star)."""
    mismatch = "yellow star" in rec.prompt
    if "Does this image show" in rec.prompt:
        return "No" if mismatch else "Yes"
    if "Describe this image" in rec.prompt:
        return "A simple coloured shape on a plain background."
    if mismatch:
        return '```json\n{"rationale": "a green triangle, not a yellow star", "prompt_alignment": 1, ' \
               '"visual_quality": 7, "overall": 2}\n```'
    return '{"rationale": "exactly as asked", "prompt_alignment": 9, "visual_quality": 8, "overall": 8.5}'


def test_evaluation_example_runs_end_to_end(tmp_path):
    spec = PipelineSpec.from_yaml(EXAMPLES / "judge-eval.yaml")
    with FakeOpenAIServer(chat_handler=_model_answer) as server:
        for step in spec.steps:
            if "base_url" in step.options:
                step.options["base_url"] = server.url
        spec.out = tmp_path / "run"
        results = run_pipeline(spec)
    assert [r.failed for r in results] == [0] * len(results)
    rows = {r["id"]: r for r in Run(spec.out).rows()}
    assert sorted(rows) == ["circle", "square"]  # the mismatch was filtered out
    circle = rows["circle"]
    assert circle["scores"]["overall"] == 8.5 and circle["vqa"]["vqascore"] == 1.0
    assert circle["caption"] == "A simple coloured shape on a plain background."
