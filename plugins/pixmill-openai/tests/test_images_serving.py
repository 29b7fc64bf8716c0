"""openai-images over real HTTP: generations and edits, every parameter, b64 and URL answers,
several reference images, masks, DALL-E quirks."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from pixmill import EditRequest, ImageRequest
from pixmill.http import RequestError
from pixmill_testing.openai_server import FaultRule


@pytest.fixture
def serving(server, loaded_serving):
    """``serving(**options)``: an openai-images serving on the test server, checked and loaded."""
    return lambda **kw: loaded_serving("openai-images", base_url=server.url, api_key="sk-test", **kw)


def test_generate_returns_the_api_bytes_as_sent(serving, server):
    s = serving(size="96x64", quality="high", background="transparent", output_format="png")
    [images] = s.generate([ImageRequest("a red cube", seeds=[1, 2])])
    assert len(images) == 2
    rec = server.requests[-1]
    assert rec.endpoint == "images/generations"
    assert rec.body["n"] == 2 and rec.body["size"] == "96x64" and rec.body["quality"] == "high"
    assert rec.body["background"] == "transparent" and rec.body["output_format"] == "png"
    assert "response_format" not in rec.body  # gpt-image-1 always answers b64_json and rejects the field
    # the saved bytes are exactly the API's (no decode/re-encode)
    assert images[0].data == server.make_image("a red cube", 0, (96, 64), "png")
    assert images[0].suffix == ".png"
    meta = images[0].params
    assert meta["serving"] == "openai-images" and meta["model"] == "gpt-image-1" and meta["prompt"] == "a red cube"
    assert meta["size"] == "96x64" and meta["quality"] == "high" and "request_id" not in meta  # rows repeat exactly
    s.unload()


def test_request_size_is_used_when_the_serving_sets_none(serving, server):
    s = serving()
    [images] = s.generate([ImageRequest("wide", seeds=[0], width=128, height=64)])
    assert server.requests[-1].body["size"] == "128x64"
    assert Image.open(io.BytesIO(images[0].data)).size == (128, 64)


@pytest.mark.parametrize("fmt, suffix", [("jpeg", ".jpg"), ("webp", ".webp")])
def test_output_format_sets_the_file_suffix(serving, server, fmt, suffix):
    s = serving(output_format=fmt)
    [images] = s.generate([ImageRequest("a cat", seeds=[0])])
    assert images[0].suffix == suffix
    assert Image.open(io.BytesIO(images[0].data)).format == {"jpeg": "JPEG", "webp": "WEBP"}[fmt]


def test_dalle3_makes_one_image_per_call_and_records_the_revised_prompt(serving, server):
    s = serving(model="dall-e-3", style="vivid")
    [images] = s.generate([ImageRequest("a castle", seeds=[1, 2, 3])])
    calls = server.requests_for("a castle")
    assert len(images) == 3 and len(calls) == 3 and all(c.body["n"] == 1 for c in calls)
    assert calls[0].body["response_format"] == "b64_json" and calls[0].body["style"] == "vivid"
    assert images[0].params["revised_prompt"] == "a castle (revised)"


def test_url_answers_are_downloaded_without_the_key(serving, server):
    s = serving(model="dall-e-2", response_format="url")
    [images] = s.generate([ImageRequest("a boat", seeds=[0])])
    assert server.requests[-1].body["response_format"] == "url"
    assert images[0].data == server.make_image("a boat", 0)
    [(path, auth)] = server.file_requests
    assert path.startswith("/files/") and auth is None  # the image host never sees the API key


def test_url_answers_from_a_proxy_that_ignores_the_format(serving, server):
    server.images_response = "url"
    s = serving()
    [images] = s.generate([ImageRequest("proxied", seeds=[0, 1])])
    assert len(images) == 2 and all(im.data.startswith(b"\x89PNG") for im in images)


def test_edit_sends_every_reference_image_as_its_own_part(serving, server):
    s = serving(input_fidelity="high")
    refs = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    [images] = s.edit([EditRequest("combine them", images=refs, seeds=[7])])
    rec = server.requests[-1]
    assert rec.endpoint == "images/edits" and rec.image_parts == 3
    assert [Image.open(io.BytesIO(b)).getpixel((0, 0)) for b in rec.images] == [(255, 0, 0), (0, 128, 0), (0, 0, 255)]
    assert rec.body["input_fidelity"] == "high" and rec.body["model"] == "gpt-image-1"
    assert images[0].params["reference_images"] == 3
    assert Image.open(io.BytesIO(images[0].data)).size == (40, 30)  # fake server keeps the input size


@pytest.mark.parametrize("model, as_is", [("gpt-image-1", True), ("dall-e-2", False)])
def test_edit_uploads_a_file_the_model_takes_byte_for_byte(serving, server, tmp_path, model, as_is):
    from pixmill.image_files import probe_image

    path = tmp_path / "photo.jpg"
    Image.effect_noise((64, 48), 50).convert("RGB").save(path, quality=85)
    s = serving(model=model)
    [images] = s.edit([EditRequest("make it blue", images=[probe_image(path)], seeds=[0])])
    assert not isinstance(images, Exception), images
    sent = server.requests[-1].images[0]
    if as_is:  # gpt-image-1 takes JPEG: the file's own bytes, not a re-encoded copy
        assert sent == path.read_bytes()
    else:  # DALL-E 2 takes only PNG: re-encoded, losslessly
        decoded = Image.open(io.BytesIO(sent))
        assert decoded.format == "PNG" and decoded.tobytes() == Image.open(path).convert("RGB").tobytes()


def test_mask_is_converted_to_the_api_convention(serving, server):
    s = serving()
    image = Image.new("RGB", (40, 30), "gray")
    mask = Image.new("L", (20, 15), 0)  # smaller than the image: resized to it
    mask.paste(255, (0, 0, 10, 15))  # white (repaint) on the left half
    s.edit([EditRequest("fill", images=[image], seeds=[0], mask=mask)])
    sent = Image.open(io.BytesIO(server.requests[-1].mask))
    assert sent.mode == "RGBA" and sent.size == (40, 30)
    assert sent.getpixel((5, 5))[3] == 0  # white in pixmill's mask -> transparent = edit here
    assert sent.getpixel((35, 25))[3] == 255  # black -> opaque = keep


def test_dalle2_refuses_several_images_with_a_clear_reason(serving, server):
    s = serving(model="dall-e-2")
    im = Image.new("RGB", (32, 32))
    [error] = s.edit([EditRequest("x", images=[im, im], seeds=[0])])
    assert isinstance(error, RequestError) and "dall-e-2 edits take one image" in str(error)
    assert server.requests == []  # refused before any request


def test_one_bad_request_does_not_sink_the_batch(serving, server):
    server.rules.append(FaultRule("refusal", match="forbidden"))
    server.rules.append(FaultRule("no_image", match="empty"))
    s = serving()
    ok, refused, empty = s.generate([ImageRequest("fine", [0]), ImageRequest("forbidden", [0]),
                                     ImageRequest("empty", [0])])
    assert ok[0].data.startswith(b"\x89PNG")
    assert "HTTP 400" in str(refused) and "safety system" in str(refused)
    assert "no image" in str(empty)


def test_malformed_json_is_retried(serving, server):
    server.rules.append(FaultRule("malformed", match="truncated", times=1))
    s = serving(max_retries=2)
    [images] = s.generate([ImageRequest("truncated", [0])])
    assert images[0].data.startswith(b"\x89PNG") and len(server.requests_for("truncated")) == 2


def test_extra_body_reaches_the_server(serving, server):
    s = serving(extra_body={"seed_hint": 5})
    s.generate([ImageRequest("extra", [0])])
    assert server.requests[-1].body["seed_hint"] == 5


def test_b64_helper_tolerates_urlsafe_and_missing_padding():
    from pixmill.http.media import decode_base64

    raw = bytes(range(256))
    assert decode_base64(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert decode_base64("not base64 !!") is None
