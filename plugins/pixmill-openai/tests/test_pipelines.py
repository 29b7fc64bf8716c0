"""End to end through the runner: the three DataFlow-MM flows (text-to-image by API, editing by API,
multi-subject generation), by the CLI, the Python API and the example pipelines in example_data/api."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pixmill import Storage, get_operator, get_serving
from pixmill.pipeline import PipelineSpec, run_pipeline
from pixmill_testing import step_rows

PIXMILL = str(Path(sys.executable).with_name("pixmill"))
EXAMPLES = Path(__file__).resolve().parents[3] / "example_data" / "api"


def cli(args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([PIXMILL, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_text_to_image_by_api_through_the_cli(tmp_path, server):
    out = tmp_path / "t2i"
    done = cli(["run", "-i", str(EXAMPLES / "prompts.jsonl"), "-o", str(out), "-q",
                "generate-images", "--serving", "openai-images", "--base-url", server.url, "--api-key", "sk-cli",
                "--size", "64x48", "--images-per-prompt", "2", "--concurrency", "4"])
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in step_rows(out, 1)}
    assert set(rows) == {"lighthouse", "market", "teapot", "fox"}
    teapot = rows["teapot"]
    assert len(teapot["images"]) == 2 and teapot["images_meta"][0]["prompt"].startswith("a cast-iron teapot")
    data = (out / teapot["images"][1]).read_bytes()
    assert data == server.make_image(teapot["images_meta"][1]["prompt"], 1, (64, 48))  # saved as sent
    assert all(r.body["n"] == 2 and r.body["size"] == "64x48" for r in server.requests)
    # rerun: cached, no request
    n = len(server.requests)
    again = cli(["run", "-i", str(EXAMPLES / "prompts.jsonl"), "-o", str(out), "-q",
                 "generate-images", "--serving", "openai-images", "--base-url", server.url + "/v1/",
                 "--api-key", "other-key", "--size", "64x48", "--images-per-prompt", "2", "--concurrency", "9"])
    assert again.returncode == 0 and len(server.requests) == n  # key, URL form and concurrency: same step


def test_editing_by_api_through_the_python_api(tmp_path, server):
    with Storage(input=EXAMPLES / "edits.jsonl", out=tmp_path / "edit") as storage:
        EditImages = get_operator("edit-images")
        serving = get_serving("openai-images", base_url=server.url, api_key="sk-api", quality="low")
        result = EditImages(serving=serving).run(storage.step(), input_key="instruction", image_key="images")
        rows = storage.read()
    assert (result.done, result.failed) == (3, 0)
    for row in rows:
        assert Image.open(tmp_path / "edit" / row["edited_images"][0]).format == "PNG"
        assert row["edited_images_meta"][0]["quality"] == "low"
    assert all(r.endpoint == "images/edits" and r.image_parts == 1 for r in server.requests)
    sent = Image.open(io.BytesIO(server.requests_for("steam")[0].images[0]))
    assert sent.size == Image.open(EXAMPLES / "images" / "blue_mug.png").size


def test_inpainting_with_a_mask(tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    spec = example_spec("inpaint_openai.yaml", server, tmp_path)
    run_pipeline(spec)
    [row] = step_rows(tmp_path / "inpaint_openai", 1)
    assert row["edited_images_meta"][0]["mask"] is True
    mask = Image.open(io.BytesIO(server.requests[-1].mask))
    assert mask.getpixel((128, 128))[3] == 0 and mask.getpixel((5, 5))[3] == 255


def test_multi_subject_generation_composes_separate_condition_images(tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")  # the example names this variable
    spec = example_spec("multi_subject_openrouter.yaml", server, tmp_path)
    results = run_pipeline(spec)
    assert [(r.done, r.failed) for r in results[1:]] == [(2, 0), (2, 0)]
    run = tmp_path / "multi_subject_openrouter"
    step1 = {r["id"]: r for r in step_rows(run, 1)}
    step2 = {r["id"]: r for r in step_rows(run, 2)}
    corgi = step1["corgi-armchair"]
    assert len(corgi["subject_images"]) == 2  # one condition image per subject, in order
    assert corgi["subject_images_meta"][1]["prompt"].startswith("a vintage blue velvet armchair")
    [compose] = server.requests_for("Put the dog from the first image")
    assert compose.image_parts == 2  # each subject image its own part, never a collage
    for sent, path in zip(compose.images, corgi["subject_images"], strict=True):
        assert Image.open(io.BytesIO(sent)).tobytes() == Image.open(run / path).convert("RGB").tobytes()
    assert step2["corgi-armchair"]["composed_image"].endswith(".png")
    assert all(r.authorization == "Bearer sk-or-test" for r in server.requests)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name != "edit_categories.yaml"))
def test_every_example_pipeline_runs(tmp_path, server, name, monkeypatch):
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(var, "sk-example")
    results = run_pipeline(example_spec(name, server, tmp_path))
    assert all(r.failed == 0 and r.rows > 0 for r in results), [r.as_dict() for r in results]


def test_categories_file_example_through_the_cli(tmp_path, server):
    out = tmp_path / "instr"
    done = cli(["run", "-i", str(EXAMPLES / "captions.jsonl"), "-o", str(out), "-q",
                "generate-prompts", "--serving", "openai-llm", "--base-url", server.url, "--api-key", "k",
                "--categories-file", str(EXAMPLES / "edit_categories.yaml"), "--num-prompts", "10",
                "--topic-key", "caption", "--output-key", "instruction",
                "edit-images", "--serving", "openai-chat", "--base-url", server.url, "--api-key", "k",
                "--input-key", "instruction", "--stream"])
    assert done.returncode == 0, done.stderr
    rows = step_rows(out, 2)
    assert len(rows) == 20
    ball = sorted((r for r in rows if r["id"].startswith("ball/")), key=lambda r: int(r["id"].split("/")[1]))
    cats = [r["category"] for r in ball]
    assert cats == ["replace"] * 3 + ["add"] * 2 + ["remove"] * 2 + ["style"] + ["background"] * 2
    assert all(r["edited_images"][0].endswith(".png") for r in rows)


def example_spec(name: str, server, tmp_path: Path) -> PipelineSpec:
    """An example pipeline pointed at the fake server, writing into tmp_path."""
    spec = PipelineSpec.from_yaml(EXAMPLES / name)
    for step in spec.steps:
        step.options["base_url"] = server.url
        step.options.pop("rpm", None)  # the examples pace real providers; the local server needs no pacing
    spec.out = tmp_path / Path(name).stem
    return spec


def test_example_inputs_are_valid_jsonl():
    for path in EXAMPLES.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for image in row.get("images", []):
                assert (EXAMPLES / image).is_file(), (path.name, image)
