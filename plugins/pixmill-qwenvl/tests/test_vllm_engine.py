"""The ``vllm`` engine. Building its inputs (the chat-templated prompt and ``multi_modal_data`` with
every image of the row) and reading its outputs are plain functions tested here with the tiny model's
real tokenizer; the in-process ``vllm.LLM`` run needs vLLM and a CUDA GPU and skips cleanly without."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
from PIL import Image
from pixmill.errors import ConfigError
from pixmill.pipeline import StepSpec
from pixmill.plugins import get_registry
from pixmill.serving import ChatRequest
from pixmill_qwenvl.engines.vllm_engine import build_vllm_inputs, sampling_kwargs, to_chat_response


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _request(*sizes: tuple[int, int], **kw) -> ChatRequest:
    parts = [{"type": "image", "image": Image.new("RGB", s, (i * 40, 0, 0))} for i, s in enumerate(sizes)]
    return ChatRequest([{"role": "user", "content": [*parts, {"type": "text", "text": "Rate it."}]}], **kw)


def test_inputs_carry_every_image_of_the_row_in_order(tokenizer):
    prompt = build_vllm_inputs(_request((56, 56), (300, 200), (20, 20)), tokenizer, 784, 28 * 28 * 16)
    images = prompt["multi_modal_data"]["image"]
    assert [im.size for im in images] == [(56, 56), (112, 84), (28, 28)]
    assert [im.getpixel((0, 0))[0] for im in images] == [0, 40, 80]  # the row's order
    text = prompt["prompt"]
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    assert text.startswith("<|im_start|>user\n") and text.endswith("Rate it.<|im_end|>\n<|im_start|>assistant\n")


def test_text_only_request_has_no_multimodal_data(tokenizer):
    prompt = build_vllm_inputs(ChatRequest([{"role": "user", "content": "hello"}]), tokenizer, 784, 10_000)
    assert "multi_modal_data" not in prompt and "hello" in prompt["prompt"]


def test_sampling_follows_the_request_then_the_serving_defaults():
    cfg = {"top_p": 0.9, "top_logprobs": 5}
    assert sampling_kwargs(_request((28, 28), max_tokens=1, temperature=0.0, logprobs=True), cfg) == {
        "temperature": 0.0, "top_p": 0.9, "max_tokens": 1, "logprobs": 5}
    assert "logprobs" not in sampling_kwargs(_request((28, 28), max_tokens=64), cfg)


def test_outputs_become_chat_responses_with_logprobs():
    # the shape of vllm.RequestOutput: outputs[0].text / .logprobs[i] = {token_id: Logprob}
    lp = SimpleNamespace
    output = SimpleNamespace(outputs=[SimpleNamespace(
        text="Yes", finish_reason="length", token_ids=[9],
        logprobs=[{9: lp(logprob=-0.1, decoded_token="Yes"), 10: lp(logprob=-2.5, decoded_token="No")}])])
    answer = to_chat_response(output)
    assert answer.text == "Yes" and answer.logprobs == [{"Yes": -0.1, "No": -2.5}]
    assert answer.params == {"engine": "vllm", "finish_reason": "length", "tokens": 1}


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_check_explains_how_to_get_vllm_when_missing():
    serving = get_registry().get_serving("qwen-vl")(engine="vllm")
    with pytest.raises(ConfigError, match=r"pixmill-qwenvl\[vllm\].*--engine openai"):
        serving.check()


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
@pytest.mark.skipif(not _cuda(), reason="vLLM in-process needs a CUDA GPU")
def test_vllm_judges_a_multi_image_row_in_process(tmp_path_factory, pixmill_run, make_png):
    from pixmill_qwenvl.tiny import build_tiny_qwen_vl

    model = build_tiny_qwen_vl(tmp_path_factory.mktemp("vllm") / "small", preset="small")
    rows = [{"id": "r", "prompt": "a cat",
             "image": [make_png("images/a.png", size=(56, 56)), make_png("images/b.png", size=(84, 56))]},
            {"id": "q", "prompt": "a dog", "image": make_png("images/c.png", size=(56, 56))}]
    serving = {"serving": "qwen-vl", "engine": "vllm", "model": str(model), "max_pixels": 56 * 84,
               "gpu_memory_utilization": 0.3, "max_model_len": 2048, "dtype": "bfloat16"}
    run = pixmill_run(rows, [StepSpec("caption", {**serving, "max_tokens": 4}),
                             StepSpec("judge", {**serving, "mode": "vqascore", "top_logprobs": 20})])
    captioned, failed = run.step_by_id(1), run.step_failed(1)
    assert not failed and len(captioned["r"]["caption"]) == 2
    judged, failed = run.step_by_id(2), run.step_failed(2)
    # random weights: yes/no may miss the top 20, which is a recorded failure, never a crash
    assert set(judged) | set(failed) == {"r", "q"}
