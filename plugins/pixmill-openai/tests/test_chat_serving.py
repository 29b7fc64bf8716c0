"""openai-chat (image-returning chat models) and openai-llm (text/JSON) over real HTTP: every image
shape providers use, streaming, separate reference-image parts, answers without images."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from pixmill import ChatRequest, EditRequest, ImageRequest
from pixmill_openai.parse import find_images, merge_stream
from pixmill_testing.openai_server import CHAT_IMAGE_SHAPES, FaultRule


@pytest.fixture
def chat_serving(server, loaded_serving):
    """``chat_serving(**options)``: an openai-chat serving on the test server, loaded."""
    return lambda **kw: loaded_serving("openai-chat", base_url=server.url, api_key="sk-test", **kw)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("shape", CHAT_IMAGE_SHAPES)
def test_images_are_found_in_every_answer_shape(chat_serving, server, shape, stream):
    s = chat_serving(stream=stream)
    prompt = f"a lemon [shape:{shape}]"
    [images] = s.generate([ImageRequest(prompt, seeds=[3])])
    assert not isinstance(images, Exception), images
    assert images[0].data == server.make_image(prompt, 0)  # the exact bytes the server sent
    assert images[0].suffix == ".png"
    assert images[0].params["text"] == "Here is the image."  # the model's words, image data stripped
    assert server.requests[-1].stream is stream


def test_reference_images_are_separate_parts_in_order_never_a_collage(chat_serving, server):
    s = chat_serving()
    refs = [Image.new("RGB", (30 + 10 * i, 20), c) for i, c in enumerate(("red", "lime", "blue"))]
    [images] = s.edit([EditRequest("put the three subjects together", images=refs, seeds=[1])])
    rec = server.requests[-1]
    assert rec.image_parts == 3
    sent = [Image.open(io.BytesIO(b)) for b in rec.images]
    assert [im.size for im in sent] == [(30, 20), (40, 20), (50, 20)]
    assert [im.convert("RGB").getpixel((0, 0)) for im in sent] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    parts = rec.body["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "put the three subjects together"}
    assert [p["type"] for p in parts[1:]] == ["image_url"] * 3
    assert images[0].params["reference_images"] == 3


def test_request_carries_modalities_seed_and_system_prompt(chat_serving, server):
    s = chat_serving(system_prompt="You are an illustrator.", temperature=0.4,
                     extra_body={"image_config": {"aspect_ratio": "16:9"}})
    [images] = s.generate([ImageRequest("a kite", seeds=[11, 12])])
    first, second = sorted(server.requests_for("a kite"), key=lambda r: r.body["seed"])
    assert first.body["modalities"] == ["image", "text"]
    assert (first.body["seed"], second.body["seed"]) == (11, 12)  # one call per requested image
    assert first.body["messages"][0] == {"role": "system", "content": "You are an illustrator."}
    assert first.body["temperature"] == 0.4 and first.body["image_config"] == {"aspect_ratio": "16:9"}
    assert [im.params["seed"] for im in images] == [11, 12]


def test_modalities_and_seed_can_be_left_out(chat_serving, server):
    s = chat_serving(modalities=[], send_seed=False, model="image-model")
    s.generate([ImageRequest("plain", seeds=[1])])
    body = server.requests[-1].body
    assert "modalities" not in body and "seed" not in body


def test_an_answer_without_an_image_fails_with_the_model_text(chat_serving, server):
    server.rules.append(FaultRule("no_image", match="nope"))
    s = chat_serving()
    ok, refused = s.generate([ImageRequest("fine", [0]), ImageRequest("nope", [0])])
    assert not isinstance(ok, Exception)
    assert isinstance(refused, Exception)
    assert "no image in the answer" in str(refused) and "against my guidelines" in str(refused)
    assert len(server.requests_for("nope")) == 1  # not retried: asking again costs money for the same refusal


def test_a_mask_is_refused_clearly(chat_serving, server):
    s = chat_serving()
    im = Image.new("RGB", (8, 8))
    [error] = s.edit([EditRequest("x", images=[im], seeds=[0], mask=Image.new("L", (8, 8)))])
    assert "cannot take a mask" in str(error) and "openai-images" in str(error)


# -- the parser on shapes the fake server does not produce -------------------------------------------
def png_bytes(color="red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def test_parser_handles_provider_variants():
    png = png_bytes()
    b64 = base64.b64encode(png).decode()
    variants = [
        {"images": [{"b64_json": b64}]},
        {"images": [f"data:image/png;base64,{b64}"]},
        {"content": [{"type": "image", "inline_data": {"mime_type": "image/png", "data": b64}}]},
        {"content": [{"type": "output_image", "image_url": f"data:image/png;base64,{b64}"}]},
        {"content": f'Sure: <img src="data:image/png;base64,{b64}"> done'},
    ]
    for message in variants:
        refs, _ = find_images(message)
        assert refs == [png], message
    refs, text = find_images({"content": "See ![result](https://cdn.example/x.png) here"})
    assert refs == ["https://cdn.example/x.png"] and text == "See here"
    # the same image in two places is one image; text that only looks like base64 is not an image
    refs, _ = find_images({"images": [{"image_url": {"url": f"data:image/png;base64,{b64}"}}],
                           "content": f"![a](data:image/png;base64,{b64})"})
    assert refs == [png]
    assert find_images({"content": "A" * 300})[0] == []


def test_stream_merge_reassembles_split_base64():
    b64 = base64.b64encode(png_bytes("blue")).decode()
    text = f"here ![x](data:image/png;base64,{b64})"
    chunks = [{"choices": [{"delta": {"content": text[i:i + 7]}, "finish_reason": None}]} for i in range(0, len(text), 7)]
    chunks.append({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    message, finish = merge_stream(chunks)
    assert finish == "stop" and find_images(message)[0] == [png_bytes("blue")]


# -- openai-llm ------------------------------------------------------------------------------------
@pytest.fixture
def llm_serving(server, loaded_serving):
    """``llm_serving(**options)``: an openai-llm serving on the test server, loaded."""
    return lambda **kw: loaded_serving("openai-llm", base_url=server.url + "/v1/", api_key="sk-test", **kw)


def test_llm_json_mode_and_defaults(llm_serving, server):
    s = llm_serving(temperature=0.2, max_tokens=50, system_prompt="Be brief.")
    [answer] = s.chat([ChatRequest([{"role": "user", "content": "Write exactly 2 items in the category \"x\""}],
                                   json=True)])
    body = server.requests[-1].body
    assert body["response_format"] == {"type": "json_object"}
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert len(json.loads(answer.text)["items"]) == 2
    assert answer.params["model"] == "gpt-4o-mini" and answer.params["serving"] == "openai-llm"


def test_llm_request_values_win_and_prompt_json_mode(llm_serving, server):
    s = llm_serving(temperature=0.2, json_mode="prompt")
    s.chat([ChatRequest([{"role": "user", "content": "hi"}], json=True, temperature=0.9)])
    body = server.requests[-1].body
    assert "response_format" not in body and body["temperature"] == 0.9


def test_llm_vision_parts_and_logprobs(llm_serving, server):
    server.chat_handler = lambda rec: f"I see {rec.image_parts} images"
    s = llm_serving()
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image", "image": Image.new("RGB", (4, 4))},
             {"type": "image", "image": png_bytes()}]
    [answer] = s.chat([ChatRequest([{"role": "user", "content": parts}], logprobs=True)])
    assert answer.text == "I see 2 images"
    assert server.requests[-1].body["logprobs"] is True
    assert answer.logprobs and answer.logprobs[0]["I"] == pytest.approx(-0.05)


def test_llm_errors_are_per_request(llm_serving, server):
    server.rules.append(FaultRule("refusal", match="bad"))
    s = llm_serving()
    ok, bad = s.chat([ChatRequest([{"role": "user", "content": "good"}]),
                      ChatRequest([{"role": "user", "content": "bad"}])])
    assert ok.text == "echo: good" and "HTTP 400" in str(bad)
