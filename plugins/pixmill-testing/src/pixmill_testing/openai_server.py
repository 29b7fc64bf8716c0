"""A fake OpenAI-compatible server on 127.0.0.1 for tests, benchmarks and offline demos.

It speaks the parts of the API that pixmill's HTTP servings use, over real HTTP:

- ``POST /v1/images/generations`` (JSON) and ``POST /v1/images/edits`` (multipart, several
  ``image[]`` files and a ``mask``): ``b64_json`` answers, or ``url`` answers served from ``/files/``;
- ``POST /v1/chat/completions``: text answers (LLMs), JSON answers, and image answers in every shape
  providers use (``message.images[].image_url.url``, data URLs in content parts, inline base64 in
  the text, image URLs), optionally streamed as server-sent events;
- ``POST /v1/moderations``: OpenAI moderation answers (``results[]`` with ``flagged``,
  ``categories`` and ``category_scores``), flagging texts that contain a word of
  :data:`MODERATION_TERMS` (or the server's own ``moderation_terms``);
- fault injection by request index, by prompt content or by probability with a seed: ``429`` with
  ``Retry-After``, ``500``, responses slower than the client's timeout, malformed JSON, answers with
  no image, ``400`` content refusals, dropped connections.

Every request is recorded (:attr:`FakeOpenAIServer.requests`), so tests can assert what was sent and
how often. Use it as a context manager::

    with FakeOpenAIServer(latency=0.05, fault_rates={"500": 0.1}, seed=1) as server:
        serving = get_serving("openai-images", base_url=server.base_url, api_key="test")
        ...
        assert len(server.requests_for("a red cube")) == 1

or as a script: ``python -m pixmill_testing.openai_server --port 8000 --latency 0.2``.
Images are real small PNGs (or JPEG/WebP) made with PIL; their colour derives from the prompt.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import random
import re
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

FAULTS = ("429", "500", "slow", "malformed", "no_image", "refusal", "disconnect", "huge", "huge_url")
HUGE_BYTES = 1024**3  # what a "huge" answer or download sends at most, if the client keeps reading
CHAT_IMAGE_SHAPES = ("images", "content_parts", "inline_text", "inline_raw", "url")
ENDPOINTS = ("images/generations", "images/edits", "chat/completions", "moderations")
# What the fake moderation model flags: a text containing one of a category's words.
MODERATION_TERMS = {"violence": ("kill", "blood", "gore"), "sexual": ("nude", "explicit"),
                    "harassment": ("idiot",), "self-harm": ("self-harm",)}
_SHAPE_TAG = re.compile(r"\[shape:([a-z_]+)\]")


@dataclass
class FaultRule:
    """Inject ``kind`` into matching requests.

    A request matches when every given condition holds: ``index`` (its 0-based position among all
    API requests the server got), ``match`` (a substring of its prompt) and ``endpoint``.
    ``times`` limits the rule to the first N matching requests (``None``: every one).
    """

    kind: str
    match: str | None = None
    index: int | None = None
    endpoint: str | None = None
    times: int | None = None
    used: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"unknown fault {self.kind!r}; choose one of {', '.join(FAULTS)}")

    def applies(self, index: int, prompt: str, endpoint: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.index is not None and self.index != index:
            return False
        if self.match is not None and self.match not in prompt:
            return False
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        return True


@dataclass
class RecordedRequest:
    """One API request the server received, and what it answered."""

    index: int
    endpoint: str
    model: str | None
    prompt: str
    body: dict[str, Any]
    # Reference images as sent: bytes (multipart files) or image_url strings, decoded on first use
    # of `images` (base64-decoding megabytes per request would make this server, which shares the
    # benchmark machine's cores, the thing a benchmark measures).
    sent_images: list[bytes | str] = field(default_factory=list, repr=False)
    mask: bytes | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)
    stream: bool = False
    fault: str | None = None
    status: int | None = None
    started: float = 0.0
    finished: float | None = None
    query: str = ""  # the request's query string (providers such as Azure require one)
    # With ``skim_images``: one :func:`image_fingerprint` per data URL image part, in order, instead
    # of the URLs themselves (``sent_images`` stays empty).
    image_fingerprints: list[str] = field(default_factory=list, repr=False)

    @property
    def images(self) -> list[bytes]:
        """The reference images' bytes, in order (an image URL that is not a data URL: its text)."""
        self.sent_images = [_data_url_bytes(i) if isinstance(i, str) else i for i in self.sent_images]
        return self.sent_images  # type: ignore[return-value]

    @property
    def image_parts(self) -> int:
        """How many reference images came as separate parts (files or image_url parts)."""
        return len(self.sent_images) + len(self.image_fingerprints)

    def as_log(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("sent_images", "mask", "authorization", "body", "image_fingerprints"):
            data.pop(key)
        data["image_parts"] = self.image_parts
        return data


ChatHandler = Callable[[RecordedRequest], "str | dict | None"]


class FakeOpenAIServer:
    """An OpenAI-compatible HTTP server in a background thread (see the module docstring).

    - ``latency``: seconds every answer waits (the bench uses 0.2);
    - ``fault_rates``: ``{"500": 0.1, "429": 0.05}``, drawn per request from ``random.Random(seed)``;
    - ``rules``: :class:`FaultRule` list (by index, prompt substring, endpoint, first N times);
    - ``retry_after``: the ``Retry-After`` seconds sent with a 429; ``slow_seconds``: how long a
      ``slow`` fault stalls before answering;
    - ``chat_image_shape``: how chat answers carry images (one of :data:`CHAT_IMAGE_SHAPES`); a
      prompt containing ``[shape:NAME]`` picks its own;
    - ``images_response``: ``"b64"`` or ``"url"`` for the Images API (``url`` is also used whenever
      the request asks ``response_format=url``);
    - ``chat_handler``: called with each chat :class:`RecordedRequest`; return a string (the answer
      text), a dict (assistant message fields) or ``None`` for the default behaviour. This is how
      a judge's tests return JSON verdicts;
    - ``api_key``: when set, requests without ``Authorization: Bearer <api_key>`` get a 401 whose
      message echoes the key presented (as real providers do);
    - ``log_path``: append one JSON line per answered request (for servers run as a script);
    - ``moderation_terms``: ``{category: words}`` that ``/moderations`` flags (default
      :data:`MODERATION_TERMS`);
    - ``skim_images``: for benchmarks, where this server shares the client's cores while the real
      server would run elsewhere. Chat bodies are read into a buffer kept per connection, and every
      base64 data URL is cut out of the raw JSON before parsing and recorded as its
      :func:`image_fingerprint` (:attr:`RecordedRequest.image_fingerprints`) instead of its text:
      the server never copies, parses or decodes the megabytes of an image it does not look at.

    The ``huge`` fault answers with a JSON body that goes on for :data:`HUGE_BYTES` (no
    Content-Length), ``huge_url`` with an image URL whose download does; :attr:`huge_sent` records
    how many bytes each such answer got out before the client hung up.
    """

    def __init__(self, *, latency: float = 0.0, fault_rates: dict[str, float] | None = None, seed: int = 0,
                 rules: list[FaultRule] | None = None, retry_after: float = 0.05, slow_seconds: float = 5.0,
                 chat_image_shape: str = "images", images_response: str = "b64", image_side: int = 64,
                 max_image_side: int = 256, chat_handler: ChatHandler | None = None, api_key: str | None = None,
                 log_path: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 moderation_terms: dict[str, tuple[str, ...]] | None = None, skim_images: bool = False):
        for kind in fault_rates or {}:
            if kind not in FAULTS:
                raise ValueError(f"unknown fault {kind!r}; choose one of {', '.join(FAULTS)}")
        if chat_image_shape not in CHAT_IMAGE_SHAPES:
            raise ValueError(f"unknown chat image shape {chat_image_shape!r}; choose one of {CHAT_IMAGE_SHAPES}")
        self.latency = latency
        self.fault_rates = dict(fault_rates or {})
        self.rules = list(rules or [])
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.chat_image_shape = chat_image_shape
        self.images_response = images_response
        self.image_side = image_side
        self.max_image_side = max_image_side
        self.chat_handler = chat_handler
        self.api_key = api_key
        self.log_path = log_path
        self.moderation_terms = dict(moderation_terms or MODERATION_TERMS)
        self.skim_images = skim_images
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, bytes] = {}
        # (path, Authorization header) of every GET /files/ download, to check keys stay home.
        self.file_requests: list[tuple[str, str | None]] = []
        self.huge_sent: list[int] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 256  # a burst of 32+ new connections must not overflow the backlog

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that gave up (a timeout test, a killed run) is expected here, not news.
                import sys

                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self._httpd = Server((self._host, self._port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def serve_until_interrupted(self) -> None:
        """Keep the started server answering until Ctrl-C (SIGINT), then stop it: for a server
        that is its own process (a demo, a benchmark's endpoint)."""
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``: pixmill adds it)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    # -- inspection -----------------------------------------------------------------------------
    def requests_for(self, prompt_substring: str, endpoint: str | None = None) -> list[RecordedRequest]:
        """Requests whose prompt contains ``prompt_substring`` (optionally on one endpoint)."""
        with self._lock:
            return [r for r in self.requests if prompt_substring in r.prompt and (endpoint is None or r.endpoint == endpoint)]

    def reset(self) -> None:
        """Forget recorded requests (rules and rates stay)."""
        with self._lock:
            self.requests.clear()

    def add_rule(self, kind: str, **conditions: Any) -> FaultRule:
        rule = FaultRule(kind, **conditions)
        with self._lock:
            self.rules.append(rule)
        return rule

    # -- decisions (called from handler threads) ------------------------------------------------
    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            rec.index = len(self.requests)
            self.requests.append(rec)
            for rule in self.rules:
                if rule.applies(rec.index, rec.prompt, rec.endpoint):
                    rule.used += 1
                    rec.fault = rule.kind
                    return
            draw = self._random.random()
            for kind, rate in self.fault_rates.items():
                if draw < rate:
                    rec.fault = kind
                    return
                draw -= rate

    def _finish(self, rec: RecordedRequest, status: int) -> None:
        rec.status, rec.finished = status, time.time()
        if self.log_path:
            line = json.dumps(rec.as_log())
            with self._lock, open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    # -- content --------------------------------------------------------------------------------
    def make_image(self, prompt: str, index: int, size: tuple[int, int] | None = None, fmt: str = "png") -> bytes:
        """A real image whose colour derives from ``prompt`` and ``index``."""
        from PIL import Image

        w, h = size or (self.image_side, self.image_side)
        scale = min(1.0, self.max_image_side / max(w, h))
        w, h = max(1, int(w * scale)), max(1, int(h * scale))
        digest = hashlib.sha256(f"{prompt}\x00{index}".encode()).digest()
        image = Image.new("RGB", (w, h), tuple(digest[:3]))
        # A second colour block so that images are not uniform (and encoders cannot cheat).
        image.paste(tuple(digest[3:6]), (0, 0, max(1, w // 2), max(1, h // 2)))
        buf = io.BytesIO()
        pil_fmt = {"jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}.get(fmt.lower(), "PNG")
        image.save(buf, format=pil_fmt)
        return buf.getvalue()

    def store_file(self, data: bytes, suffix: str = ".png") -> str:
        name = hashlib.sha1(data).hexdigest()[:16] + suffix
        with self._lock:
            self.files[name] = data
        return f"{self.url}/files/{name}"


FINGERPRINT_SAMPLE = 4096


def image_fingerprint(text: bytes | memoryview) -> str:
    """A cheap fingerprint of an image's base64 text (a data URL's part after ``;base64,``): its
    length and the CRC-32 of its first, middle and last :data:`FINGERPRINT_SAMPLE` bytes. Two
    different images (or a truncated one) differ in it; computing it costs microseconds however
    large the image, where hashing it all would cost milliseconds of a shared core."""
    view = memoryview(text)
    n, k = len(view), FINGERPRINT_SAMPLE
    mid = max(0, n // 2 - k // 2)
    crc = zlib.crc32(view[n - k:] if n > k else b"", zlib.crc32(view[mid:mid + k], zlib.crc32(view[:k])))
    return f"{n}:{crc:08x}"


_DATA_URL_START = b'"data:image/'


def _skim_data_urls(raw: bytes | bytearray, length: int | None = None) -> tuple[bytes, list[str]]:
    """The first ``length`` bytes of ``raw`` (JSON) with every base64 image data URL string replaced by a short one, and the
    fingerprints of the cut images in order. Byte searches only: no pass over the base64 text in
    Python or in the JSON parser. (A base64 data URL needs no JSON escapes, so its raw text is
    the URL; a client that escaped it anyway gets a fingerprint that matches nothing.)"""
    length = len(raw) if length is None else length
    view = memoryview(raw)[:length]
    pieces: list[bytes | memoryview] = []
    fingerprints: list[str] = []
    pos = 0
    while (start := raw.find(_DATA_URL_START, pos, length)) >= 0:
        marker = raw.find(b";base64,", start, min(start + 64, length))
        end = raw.find(b'"', start + 1, length)
        if marker < 0 or end < 0:
            break
        fingerprints.append(image_fingerprint(view[marker + 8:end]))
        pieces += [view[pos:marker + 8], b"<skimmed>"]
        pos = end
    pieces.append(view[pos:])
    return b"".join(pieces), fingerprints


def _data_url_bytes(url: str) -> bytes:
    """The bytes of a base64 image data URL (the URL itself, encoded, if it is not one). A split,
    not a regular expression: a 1024 px image is megabytes of base64."""
    head, sep, data = url.partition(";base64,")
    if sep and head.startswith("data:image/") and len(head) < 64:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            pass
    return url.encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK would add
    # ~40 ms to every answer and the server would measure itself instead of the client.
    disable_nagle_algorithm = True
    server_owner: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests assert on recorded requests, not on stderr

    # -- routing --------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        owner = self.server_owner
        if self.path.startswith("/files/"):
            with owner._lock:
                owner.file_requests.append((self.path, self.headers.get("Authorization")))
            if self.path.endswith("/endless.png"):
                return self._endless(b"\x89PNG\r\n\x1a\n", "image/png")
            data = owner.files.get(self.path.rsplit("/", 1)[-1])
            if data is None:
                return self._json(404, {"error": {"message": "no such file"}})
            return self._send(200, data, "image/" + self.path.rsplit(".", 1)[-1].replace("jpg", "jpeg"))
        if self.path.rstrip("/").endswith("/models"):
            return self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        owner = self.server_owner
        path = self.path.split("?", 1)[0]
        endpoint = next((e for e in ENDPOINTS if path.endswith("/" + e)), None)
        length = int(self.headers.get("Content-Length") or 0)
        skim = owner.skim_images and endpoint == "chat/completions"
        raw = self._read_into_buffer(length) if skim else self.rfile.read(length) if length else b""
        fingerprints: list[str] = []
        if endpoint is None or not path.startswith("/v1/"):
            return self._json(404, {"error": {"message": f"no route {path} (the API lives under /v1/)"}})
        try:
            if skim:
                raw, fingerprints = _skim_data_urls(raw, length)
            body, images, mask = self._parse(endpoint, raw)
        except ValueError as exc:
            return self._json(400, {"error": {"message": f"bad request body: {exc}", "type": "invalid_request_error"}})
        if fingerprints:
            images = [i for i in images if not (isinstance(i, str) and i.endswith(";base64,<skimmed>"))]
        rec = RecordedRequest(index=-1, endpoint=endpoint, model=body.get("model"), prompt=_prompt_of(endpoint, body),
                              body=body, sent_images=images, mask=mask, authorization=self.headers.get("Authorization"),
                              stream=bool(body.get("stream")), started=time.time(),
                              query=self.path.partition("?")[2], image_fingerprints=fingerprints)
        owner._record(rec)
        if owner.api_key is not None and rec.authorization != f"Bearer {owner.api_key}":
            # Like real providers, echo the key that was presented: clients must keep it out of logs.
            given = (rec.authorization or "").removeprefix("Bearer ")
            return self._fail(rec, 401, f"Incorrect API key provided: {given}.", "invalid_api_key")
        fault = rec.fault
        time.sleep(owner.slow_seconds if fault == "slow" else owner.latency)
        try:
            if fault == "429":
                return self._fail(rec, 429, "Rate limit reached for requests.", "rate_limit_exceeded",
                                  {"Retry-After": f"{owner.retry_after:g}"})
            if fault == "500":
                return self._fail(rec, 500, "The server had an error while processing your request.", "server_error")
            if fault == "refusal":
                return self._fail(rec, 400, "Your request was rejected as a result of our safety system.",
                                  "content_policy_violation")
            if fault == "disconnect":
                owner._finish(rec, 0)
                self.close_connection = True
                self.connection.close()
                return None
            if fault == "huge":
                owner._finish(rec, 200)
                return self._endless(b'{"created": 1, "data": [{"b64_json": "', "application/json")
            if fault == "huge_url":
                owner._finish(rec, 200)
                return self._json(200, {"created": 1, "data": [{"url": f"{owner.url}/files/endless.png"}]})
            if fault == "malformed":
                owner._finish(rec, 200)
                return self._send(200, b'{"created": 1, "data": [{"b64_json": "iVBORw0KG', "application/json")
            if endpoint == "chat/completions":
                return self._chat(rec)
            if endpoint == "moderations":
                return self._moderations(rec)
            return self._images(rec)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to do
            owner._finish(rec, 499)
            return None

    # -- parsing --------------------------------------------------------------------------------
    def _read_into_buffer(self, length: int) -> bytearray:
        """A buffer this connection reuses (no fresh megabytes per request) whose first ``length``
        bytes are the body."""
        buffer = getattr(self, "_body_buffer", None)
        if buffer is None or len(buffer) < length:
            buffer = self._body_buffer = bytearray(length)
        with memoryview(buffer) as view:
            got = 0
            while got < length:
                n = self.rfile.readinto(view[got:length])
                if not n:
                    raise ConnectionError("the client closed the connection mid-body")
                got += n
        return buffer
    def _parse(self, endpoint: str, raw: bytes) -> tuple[dict[str, Any], list[bytes | str], bytes | None]:
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            return _parse_multipart(ctype, raw)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        images: list[bytes | str] = []
        if endpoint == "chat/completions":
            for msg in body.get("messages") or []:
                content = msg.get("content") if isinstance(msg, dict) else None
                for part in content if isinstance(content, list) else []:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        url = (part.get("image_url") or {}).get("url", "")
                        images.append(url)
        return body, images, None

    # -- answers --------------------------------------------------------------------------------
    def _images(self, rec: RecordedRequest) -> None:
        owner, body = self.server_owner, rec.body
        if rec.fault == "no_image":
            owner._finish(rec, 200)
            return self._json(200, {"created": int(time.time()), "data": []})
        n = int(body.get("n") or 1)
        size = _parse_size(body.get("size"))
        if size is None and rec.images:
            size = _image_size(rec.images[0])
        fmt = str(body.get("output_format") or "png")
        as_url = body.get("response_format") == "url" or owner.images_response == "url"
        data = []
        for i in range(n):
            image = owner.make_image(rec.prompt, i, size, fmt)
            item: dict[str, Any] = {"url": owner.store_file(image, "." + fmt.replace("jpeg", "jpg"))} if as_url \
                else {"b64_json": base64.b64encode(image).decode()}
            if str(rec.model or "").startswith("dall-e-3"):
                item["revised_prompt"] = f"{rec.prompt} (revised)"
            data.append(item)
        owner._finish(rec, 200)
        self._json(200, {"created": int(time.time()), "data": data,
                         "usage": {"input_tokens": 10, "output_tokens": 100, "total_tokens": 110}},
                   {"x-request-id": f"req_{rec.index}"})

    def _moderations(self, rec: RecordedRequest) -> None:
        owner, given = self.server_owner, rec.body.get("input")
        texts = [given] if isinstance(given, str) else [str(t) for t in given or []]
        results = []
        for text in texts:
            words = set(re.findall(r"[\w-]+", text.lower()))
            hits = {cat: any(t in words for t in terms) for cat, terms in owner.moderation_terms.items()}
            results.append({"flagged": any(hits.values()), "categories": hits,
                            "category_scores": {c: 0.97 if hit else 0.01 for c, hit in hits.items()}})
        owner._finish(rec, 200)
        self._json(200, {"id": f"modr-{rec.index}", "model": rec.model or "omni-moderation-latest",
                         "results": results})

    def _chat(self, rec: RecordedRequest) -> None:
        owner, body = self.server_owner, rec.body
        message: dict[str, Any] | None = None
        if owner.chat_handler is not None:
            answer = owner.chat_handler(rec)
            if isinstance(answer, str):
                message = {"role": "assistant", "content": answer}
            elif isinstance(answer, dict):
                message = {"role": "assistant", **answer}
        wants_image = "image" in (body.get("modalities") or []) or "image" in str(rec.model or "")
        if message is None and wants_image:
            message = self._image_message(rec)
        if message is None:
            message = {"role": "assistant", "content": _text_answer(rec)}
        logprobs = _logprobs(message.get("content")) if body.get("logprobs") else None
        owner._finish(rec, 200)
        if rec.stream:
            return self._stream(rec, message)
        self._json(200, {
            "id": f"chatcmpl-{rec.index}", "object": "chat.completion", "created": int(time.time()),
            "model": rec.model or "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })

    def _image_message(self, rec: RecordedRequest) -> dict[str, Any]:
        owner = self.server_owner
        if rec.fault == "no_image":
            return {"role": "assistant", "content": "I can't create that image: it is against my guidelines."}
        tag = _SHAPE_TAG.search(rec.prompt)
        shape = tag.group(1) if tag and tag.group(1) in CHAT_IMAGE_SHAPES else owner.chat_image_shape
        size = _image_size(rec.images[0]) if rec.images and rec.images[0][:4] != b"http" else None
        image = owner.make_image(rec.prompt, 0, size)
        b64 = base64.b64encode(image).decode()
        data_url = f"data:image/png;base64,{b64}"
        text = "Here is the image."
        if shape == "images":
            return {"role": "assistant", "content": text,
                    "images": [{"type": "image_url", "image_url": {"url": data_url}, "index": 0}]}
        if shape == "url":
            return {"role": "assistant", "content": text,
                    "images": [{"type": "image_url", "image_url": {"url": owner.store_file(image)}}]}
        if shape == "content_parts":
            return {"role": "assistant", "content": [{"type": "text", "text": text},
                                                     {"type": "image_url", "image_url": {"url": data_url}}]}
        if shape == "inline_text":
            return {"role": "assistant", "content": f"{text}\n\n![image]({data_url})"}
        return {"role": "assistant", "content": f"{text}\n{b64}"}  # inline_raw

    def _stream(self, rec: RecordedRequest, message: dict[str, Any]) -> None:
        base = {"id": f"chatcmpl-{rec.index}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": rec.model or "fake-model"}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        content = message.get("content")
        if isinstance(content, str):
            # Split text (and any base64 inside it) across several chunks, as real servers do.
            step = max(1, len(content) // 4 + 1)
            deltas += [{"content": content[i:i + step]} for i in range(0, len(content), step)]
        elif isinstance(content, list):
            deltas += [{"content": [part]} for part in content]
        if message.get("images"):
            deltas.append({"images": message["images"]})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # -- low level ------------------------------------------------------------------------------
    def _fail(self, rec: RecordedRequest, status: int, message: str, code: str,
              headers: dict[str, str] | None = None) -> None:
        self.server_owner._finish(rec, status)
        err_type = "invalid_request_error" if status < 500 else "server_error"
        self._json(status, {"error": {"message": message, "type": err_type, "code": code}}, headers)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _endless(self, first: bytes, ctype: str) -> None:
        """A 200 whose body (no Content-Length) goes on until HUGE_BYTES or the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk, sent = b"A" * (1 << 20), 0
        try:
            self.wfile.write(first)
            while sent < HUGE_BYTES:
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        with self.server_owner._lock:
            self.server_owner.huge_sent.append(sent)

    def _send(self, status: int, payload: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)


def _parse_multipart(ctype: str, raw: bytes) -> tuple[dict[str, Any], list[bytes], bytes | None]:
    """Split a multipart/form-data body into text fields, image files (in order) and the mask.

    A small byte-level parser: the stdlib email parser costs milliseconds per request, which at a
    few hundred requests a second would make the server, not the client, the thing measured.
    """
    match = re.search(r'boundary="?([^";]+)"?', ctype)
    if not match:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode()
    body: dict[str, Any] = {}
    images: list[bytes] = []
    mask = None
    for chunk in raw.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("malformed multipart part")
        data = data[:-2] if data.endswith(b"\r\n") else data
        disposition = next((line for line in head.decode("utf-8", "replace").split("\r\n")
                            if line.lower().startswith("content-disposition")), "")
        name_match = re.search(r'\bname="([^"]*)"', disposition)
        name = name_match.group(1) if name_match else ""
        if "filename=" in disposition or name in ("image", "image[]", "mask"):
            if name == "mask":
                mask = data
            else:
                images.append(data)
        elif name:
            body[name] = data.decode("utf-8")
    if "n" in body:
        body["n"] = int(body["n"])
    return body, images, mask


def _prompt_of(endpoint: str, body: dict[str, Any]) -> str:
    if endpoint == "moderations":
        given = body.get("input")
        return given if isinstance(given, str) else "\n".join(map(str, given or []))
    if endpoint != "chat/completions":
        return str(body.get("prompt") or "")
    texts = []
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict) or msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(texts)


def _parse_size(size: Any) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)x(\d+)", str(size or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def _image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - not an image: use the default size
        return None


def _text_answer(rec: RecordedRequest) -> str:
    """The default LLM: a JSON object of N distinct items when JSON is asked and the prompt says
    "exactly N", else an echo of the prompt."""
    fmt = rec.body.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        match = re.search(r"exactly (\d+)", rec.prompt)
        n = int(match.group(1)) if match else 3
        seed = hashlib.sha256(rec.prompt.encode()).hexdigest()
        subject = re.search(r"category[^\w]*([\w -]+)", rec.prompt)
        topic = subject.group(1).strip() if subject else "an image"
        return json.dumps({"items": [f"{topic}: synthetic item {i + 1} ({seed[i * 6:i * 6 + 6]})" for i in range(n)]})
    return f"echo: {rec.prompt}"


def _logprobs(content: Any) -> dict[str, Any] | None:
    if not isinstance(content, str):
        return None
    tokens = re.findall(r"\S+|\s+", content)[:200]
    return {"content": [{"token": t, "logprob": -0.05, "bytes": list(t.encode()),
                         "top_logprobs": [{"token": t, "logprob": -0.05, "bytes": list(t.encode())},
                                          {"token": "x", "logprob": -3.0, "bytes": [120]}]} for t in tokens]}


def main(argv: list[str] | None = None) -> None:
    """Run the fake server until interrupted (for benchmarks and offline demos)."""
    parser = argparse.ArgumentParser(prog="python -m pixmill_testing.openai_server",
                                     description="A fake OpenAI-compatible server for tests and demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer waits")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                        help=f"inject a fault at a rate, e.g. 500=0.1 (kinds: {', '.join(FAULTS)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--retry-after", type=float, default=0.05, help="Retry-After seconds sent with a 429")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="how long a 'slow' fault stalls")
    parser.add_argument("--chat-image-shape", default="images", choices=CHAT_IMAGE_SHAPES)
    parser.add_argument("--images-response", default="b64", choices=("b64", "url"))
    parser.add_argument("--api-key", default=None, help="require this bearer key (default: accept any)")
    parser.add_argument("--log", default=None, help="append one JSON line per request to this file")
    args = parser.parse_args(argv)
    rates = {}
    for item in args.fault:
        kind, _, rate = item.partition("=")
        rates[kind] = float(rate)
    server = FakeOpenAIServer(latency=args.latency, fault_rates=rates, seed=args.seed, retry_after=args.retry_after,
                              slow_seconds=args.slow_seconds, chat_image_shape=args.chat_image_shape,
                              images_response=args.images_response, api_key=args.api_key, log_path=args.log,
                              host=args.host, port=args.port).start()
    print(f"fake OpenAI-compatible server listening on {server.base_url}", flush=True)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
