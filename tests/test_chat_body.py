"""Chat request bodies with large images: built once as pieces, sent in slices with a
Content-Length, received intact; and the fake server's ``skim_images`` mode, which records each
image's fingerprint instead of its text."""

from __future__ import annotations

import base64
import json

import pytest
from PIL import Image
from pixmill.http import RequestEngine
from pixmill.http.body import CHUNK, RequestBody
from pixmill.http.chat import chat_body, post_chat
from pixmill.http.uploads import Uploader, UploadRule
from pixmill.image_files import probe_image
from pixmill.serving import ChatRequest
from pixmill_testing.openai_server import FakeOpenAIServer, image_fingerprint

pytest.importorskip("openai")

ANSWER = '{"overall": 7}'


def _noise_png(path, side):
    Image.effect_noise((side, side), 60).convert("RGB").save(path)
    return path


def _request(*paths):
    parts = ["rate these", *({"type": "image", "image": probe_image(p)} for p in paths)]
    return ChatRequest(messages=[{"role": "user", "content": parts}], json=True, max_tokens=50)


def _post(client, body):
    engine = RequestEngine(timeout=10.0, max_retries=0)
    return engine.run_all([lambda: post_chat(client, "judge-model", body)])[0]


def test_a_large_image_arrives_byte_for_byte_with_a_content_length(clients, tmp_path):
    big, small = _noise_png(tmp_path / "big.png", 600), _noise_png(tmp_path / "small.png", 40)
    body = chat_body("judge-model", _request(big, small), uploader=Uploader(UploadRule(data_url=True)),
                     extra_body={"top_p": 0.5})
    assert len(big.read_bytes()) * 4 // 3 > 2 * CHUNK  # the image goes out in several slices
    with FakeOpenAIServer(chat_handler=lambda rec: ANSWER) as server:
        answer = _post(clients(server.base_url, timeout=10.0), body)
    assert answer.text == ANSWER
    (rec,) = server.requests
    assert rec.images == [big.read_bytes(), small.read_bytes()]
    assert rec.body["model"] == "judge-model" and rec.body["top_p"] == 0.5
    assert rec.body["response_format"] == {"type": "json_object"} and rec.prompt == "rate these"
    assert json.loads(bytes(body))["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_a_body_can_be_sent_again_for_a_retry(clients, tmp_path):
    body = chat_body("m", _request(_noise_png(tmp_path / "a.png", 500)), uploader=Uploader(UploadRule(data_url=True)))
    with FakeOpenAIServer(chat_handler=lambda rec: ANSWER) as server:
        server.add_rule("500", index=0)
        engine = RequestEngine(timeout=10.0, backoff_base=0.01)
        client = clients(server.base_url, timeout=10.0)
        assert engine.run_all([lambda: post_chat(client, "m", body)])[0].text == ANSWER
    first, second = server.requests
    assert first.fault == "500" and second.images == first.images == [(tmp_path / "a.png").read_bytes()]


def test_request_body_slices_cover_every_piece_once():
    import asyncio

    pieces = [b"{", b"x" * (CHUNK * 2 + 5), b"", b"}"]
    body = RequestBody(pieces)

    async def collect():
        return [bytes(chunk) async for chunk in body]

    chunks = asyncio.run(collect())
    assert b"".join(chunks) == bytes(body) == b"".join(pieces) and len(body) == len(bytes(body))
    assert max(len(c) for c in chunks) == CHUNK and body.headers() == {"Content-Length": str(len(body))}


def test_skim_images_records_fingerprints_instead_of_the_images(clients, tmp_path):
    a, b = _noise_png(tmp_path / "a.png", 300), _noise_png(tmp_path / "b.png", 300)
    body = chat_body("m", _request(a, b), uploader=Uploader(UploadRule(data_url=True)))
    with FakeOpenAIServer(chat_handler=lambda rec: ANSWER, skim_images=True) as server:
        assert _post(clients(server.base_url, timeout=10.0), body).text == ANSWER
    (rec,) = server.requests
    want = [image_fingerprint(base64.b64encode(p.read_bytes())) for p in (a, b)]
    assert rec.image_fingerprints == want and want[0] != want[1]
    assert rec.image_parts == 2 and rec.images == [] and rec.prompt == "rate these"
    assert rec.body["response_format"] == {"type": "json_object"}


def test_a_fingerprint_tells_a_changed_or_cut_image_apart():
    text = base64.b64encode(bytes(range(256)) * 100)
    mid = len(text) // 2  # sampled, as are the first and last 4 KiB: another image differs there
    changed = text[:mid] + (b"A" if text[mid:mid + 1] != b"A" else b"B") + text[mid + 1:]
    assert len({image_fingerprint(text), image_fingerprint(changed), image_fingerprint(text[:-4])}) == 3
