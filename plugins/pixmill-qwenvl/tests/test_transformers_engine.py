"""The ``transformers`` engine on a tiny random-weight Qwen2.5-VL, through the real
``from_pretrained``, processor and ``generate`` path, driven by the real judge/caption operators.

What reaches the model is observed with torch module hooks on the real model's own modules (the
token embedding sees the prompt ids, the vision tower sees the pixel patches), not by patching
pixmill code.
"""

from __future__ import annotations

import json

import pytest
import torch
from pixmill.errors import ConfigError
from pixmill.pipeline import StepSpec
from pixmill.plugins import get_registry

MIN_PIXELS, MAX_PIXELS = 28 * 28, 56 * 84


@pytest.fixture
def model_inputs():
    """Record, for every generate() call, the prompt ids (first embedding call) and pixel patches."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    seen = {"prompt_ids": [], "patches": [], "classes": set()}

    def hook(module, args):
        seen["classes"].add(type(module).__name__)
        if isinstance(module, Qwen2_5_VisionTransformerPretrainedModel):
            seen["patches"].append(args[0].shape[0])
        elif isinstance(module, torch.nn.Embedding) and args and args[0].dim() == 2 and args[0].shape[1] > 1:
            seen["prompt_ids"].append(args[0].detach().clone())  # a prefill (decode steps are 1 token)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    yield seen
    handle.remove()


def _serving(model_dir, **extra) -> dict:
    return {"serving": "qwen-vl", "engine": "transformers", "model": str(model_dir),
            "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, **extra}


def _image_token_id(model_dir) -> int:
    return json.loads((model_dir / "config.json").read_text())["image_token_id"]


def _rows_with_images(make_png) -> list[dict]:
    a = make_png("images/a.png", size=(56, 56))      # 2x2 merged patches -> 4 image tokens
    b = make_png("images/b.png", size=(84, 56))      # 3x2 -> 6
    c = make_png("images/c.png", size=(30, 30))      # rounded to 28x28 -> 1
    d = make_png("images/d.png", size=(112, 112))    # above max_pixels: down to 56x56 -> 4
    return [{"id": "one", "prompt": "a cat", "image": a},
            {"id": "two", "prompt": "a dog", "image": [b, c]},
            {"id": "three", "prompt": "a cow", "image": [a, c, d]}]


def test_judge_shows_every_image_of_every_row_to_the_model(tiny_model, pixmill_run, make_png, model_inputs):
    run = pixmill_run(_rows_with_images(make_png), [StepSpec("judge", _serving(tiny_model, max_tokens=4))])
    done, failed = run.step_by_id(1), run.step_failed(1)

    assert "Qwen2_5_VLForConditionalGeneration" in model_inputs["classes"]  # loaded by from_pretrained
    prefill = model_inputs["prompt_ids"][0]
    assert prefill.shape[0] == 3  # the three rows went through one batched generate()
    image_tokens = (prefill == _image_token_id(tiny_model)).sum(dim=1).tolist()
    assert image_tokens == [4, 6 + 1, 4 + 1 + 4]
    # the vision tower saw 4 patches (2x2 merge) per image token, for all six images
    assert model_inputs["patches"] == [4 * (4 + 7 + 9)]
    # a random-weight model writes random tokens: each row fails with its raw answer kept
    assert not done and set(failed) == {"one", "two", "three"}
    assert all(r.startswith("judge: unparsable answer") and "raw: '" in r for r in failed.values())


def test_caption_describes_each_image_and_records_the_text(tiny_model, pixmill_run, make_png, model_inputs):
    run = pixmill_run(_rows_with_images(make_png), [StepSpec("caption", _serving(tiny_model, max_tokens=4))])
    done, failed = run.step_by_id(1), run.step_failed(1)
    prefill = model_inputs["prompt_ids"][0]
    # one request per image (six), batched in one generate(), each with its own image's tokens
    assert (prefill == _image_token_id(tiny_model)).sum(dim=1).tolist() == [4, 6, 1, 4, 1, 4]
    assert failed == {}
    assert isinstance(done["one"]["caption"], str) and done["one"]["caption"]
    assert [type(c) for c in done["three"]["caption"]] == [str, str, str]
    assert len(done["two"]["caption"]) == 2


def test_a_bad_image_fails_its_row_and_the_batch_goes_on(tiny_model, pixmill_run, make_png):
    img = make_png("images/a.png", size=(56, 56))
    bad = make_png("images/thin.png", size=(600, 2))  # aspect ratio the processor cannot take: fails alone
    rows = [{"id": "ok1", "prompt": "a cat", "image": img}, {"id": "thin", "prompt": "a cat", "image": bad},
            {"id": "ok2", "prompt": "a dog", "image": img}]
    run = pixmill_run(rows, [StepSpec("judge", _serving(tiny_model, max_tokens=6))])
    done, failed = run.step_by_id(1), run.step_failed(1)
    assert set(failed) == {"ok1", "thin", "ok2"} and not done
    assert "aspect ratio" in failed["thin"]  # the bad image fails its own row...
    assert all(failed[k].startswith("judge: unparsable answer") for k in ("ok1", "ok2"))  # ...the others ran


def test_vqascore_from_the_models_logprobs(tiny_model, pixmill_run, make_png):
    img = make_png("images/a.png", size=(56, 56))
    rows = [{"id": "r", "prompt": "a red cube", "image": img}]
    # top_logprobs above the tiny vocabulary: the whole distribution, so yes/no are always present
    run = pixmill_run(rows, [StepSpec("judge", _serving(tiny_model, top_logprobs=1000, mode="vqascore"))])
    done, failed = run.step_by_id(1), run.step_failed(1)
    assert failed == {}
    scores = done["r"]["scores"]
    assert 0.0 < scores["vqascore"] < 1.0
    assert scores["overall"] == pytest.approx(10 * scores["vqascore"], abs=1e-3)
    assert scores["judge"] == {"serving": "qwen-vl", "model": str(tiny_model)}


def test_engine_isolates_a_failing_request_and_keeps_the_batch(tiny_model):
    from PIL import Image
    from pixmill.serving import ChatRequest

    serving = get_registry().get_serving("qwen-vl")(engine="transformers", model=str(tiny_model), max_tokens=3)
    serving.load()
    try:
        good = ChatRequest([{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (40, 40))},
                                                         {"type": "text", "text": "hi"}]}])
        bad = ChatRequest([{"role": "user", "content": [{"type": "video", "video": b""}]}])
        text_only = ChatRequest([{"role": "user", "content": "no image here"}])
        answers = serving.chat([good, bad, text_only])
    finally:
        serving.unload()
    assert isinstance(answers[1], ValueError) and "unsupported message part 'video'" in str(answers[1])
    assert all(a.params["engine"] == "transformers" and 1 <= a.params["tokens"] <= 3 for a in (answers[0], answers[2]))


def test_check_fails_fast_on_a_missing_model_folder(tmp_path):
    serving = get_registry().get_serving("qwen-vl")(engine="transformers", model=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="neither a folder nor a Hugging Face model id"):
        serving.check()


def test_bad_pixel_bounds_are_a_config_error():
    with pytest.raises(ConfigError, match="--min-pixels"):
        get_registry().get_serving("qwen-vl")(min_pixels=10_000, max_pixels=5_000)
