"""The shared HTTP machinery (pixmill.http) over real HTTP against the fake OpenAI-compatible server:
base-URL joining, bounded concurrency, rate limits, retries with Retry-After, timeouts, permanent
errors. The requests go through the real openai client; nothing is mocked."""

from __future__ import annotations

import socket
import time

import pytest
from pixmill.errors import ConfigError
from pixmill.http import RequestEngine, RequestError, normalize_base_url
from pixmill.http.errors import describe, is_transient, retry_after
from pixmill_testing.openai_server import FakeOpenAIServer, FaultRule

pytest.importorskip("openai")


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def engine_and_client(server, clients):
    """``engine_and_client(**engine options)``: a request engine and a client of the test server."""
    def make(**kw):
        timeout = kw.pop("timeout", 5.0)
        engine = RequestEngine(timeout=timeout, backoff_base=0.01, **kw)
        return engine, clients(server.url, timeout=timeout, concurrency=engine.concurrency)
    return make


def gen(client, prompt):
    return lambda: client.images.generate(model="gpt-image-1", prompt=prompt)


# -- base URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("given, expected", [
    ("https://api.openai.com", "https://api.openai.com/v1"),
    ("https://api.openai.com/", "https://api.openai.com/v1"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
    ("https://api.openai.com/v1/v1", "https://api.openai.com/v1"),
    ("http://127.0.0.1:8000/v1/chat/completions", "http://127.0.0.1:8000/v1"),
    ("https://generativelanguage.googleapis.com/v1beta/openai/",
     "https://generativelanguage.googleapis.com/v1beta/openai"),
    ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1"),
    ("  https://proxy.corp/llm/openai/v1/ ", "https://proxy.corp/llm/openai/v1"),
])
def test_base_url_normalisation(given, expected):
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["api.openai.com", "ftp://host/v1", "", "http://"])
def test_base_url_without_scheme_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="base-url"):
        normalize_base_url(bad)


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_every_base_url_form_reaches_the_api(engine_and_client, clients, server, suffix):
    engine, client = engine_and_client()
    client = clients(server.url + suffix)
    [result] = engine.run_all([gen(client, f"form {suffix!r}")])
    assert not isinstance(result, Exception), result
    assert server.requests[-1].endpoint == "images/generations"


# -- concurrency and rate --------------------------------------------------------------------------
def max_overlap(requests) -> int:
    events = sorted([(r.started, 1) for r in requests] + [(r.finished, -1) for r in requests])
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def test_concurrency_is_bounded_and_used(engine_and_client, server):
    server.latency = 0.1
    engine, client = engine_and_client(concurrency=4)
    started = time.monotonic()
    results = engine.run_all([gen(client, f"c{i}") for i in range(16)])
    wall = time.monotonic() - started
    assert all(not isinstance(r, Exception) for r in results)
    assert max_overlap(server.requests) == 4  # never more than asked, and it does fill the slots
    assert wall < 16 * 0.1 / 4 * 2.0  # close to the ideal 0.4 s, far from the sequential 1.6 s


def test_rpm_spaces_request_starts(engine_and_client, server):
    engine, client = engine_and_client(concurrency=8, rpm=600)  # one every 0.1 s
    engine.run_all([gen(client, f"r{i}") for i in range(5)])
    starts = sorted(r.started for r in server.requests)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) > 0.07, gaps
    assert starts[-1] - starts[0] >= 0.35


# -- retries ----------------------------------------------------------------------------------
def test_429_is_retried_after_retry_after(engine_and_client, server):
    server.retry_after = 0.4
    server.rules.append(FaultRule("429", match="limited", times=1))
    engine, client = engine_and_client()
    [result] = engine.run_all([gen(client, "limited")])
    assert not isinstance(result, Exception)
    first, second = server.requests_for("limited")
    assert (first.status, second.status) == (429, 200)
    assert second.started - first.finished >= 0.4  # honoured the header, not the 10 ms backoff base


@pytest.mark.parametrize("fault", ["500", "slow", "malformed", "disconnect"])
def test_transient_faults_are_retried_until_success(engine_and_client, server, fault):
    server.slow_seconds = 3.0
    server.rules.append(FaultRule(fault, match="flaky", times=2))
    engine, client = engine_and_client(timeout=0.5)
    started = time.monotonic()
    [result] = engine.run_all([gen(client, "flaky")])
    assert not isinstance(result, Exception), result
    assert [r.fault for r in server.requests_for("flaky")] == [fault, fault, None]
    assert time.monotonic() - started < 2.5  # a slow answer was abandoned at the timeout
    assert engine.stats["retries"] == 2


def test_a_dropped_or_refused_connection_says_so_not_timed_out(engine_and_client, clients, server):
    server.rules.append(FaultRule("disconnect", match="dropped"))
    engine, client = engine_and_client(max_retries=0)
    [dropped] = engine.run_all([gen(client, "dropped")])
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    [refused] = engine.run_all([gen(clients(f"http://127.0.0.1:{port}/v1", timeout=5.0), "anyone there?")])
    assert "connection failed" in str(dropped) and "timed out" not in str(dropped)
    assert "connection failed" in str(refused) and f"127.0.0.1:{port}" in str(refused)
    assert dropped.transient and refused.transient  # worth retrying, like a timeout


def test_permanent_error_fails_only_its_request_without_retry(engine_and_client, server):
    server.rules.append(FaultRule("refusal", match="forbidden"))
    engine, client = engine_and_client()
    ok, refused = engine.run_all([gen(client, "fine"), gen(client, "forbidden thing")])
    assert not isinstance(ok, Exception)
    assert isinstance(refused, RequestError)
    assert refused.status == 400 and "HTTP 400" in str(refused) and "safety system" in str(refused)
    assert len(server.requests_for("forbidden")) == 1  # never retried


def test_retries_are_bounded(engine_and_client, server):
    server.rules.append(FaultRule("500", match="down"))
    engine, client = engine_and_client(max_retries=2)
    [error] = engine.run_all([gen(client, "down")])
    assert isinstance(error, RequestError) and error.status == 500
    assert "gave up after 3 attempts" in str(error)
    assert len(server.requests_for("down")) == 3


def test_backoff_is_full_jitter_and_capped():
    engine = RequestEngine(backoff_base=0.5, backoff_max=4.0)
    delays = [engine._delay(RuntimeError(), attempt) for attempt in (1, 2, 3, 10) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in delays)
    first = [engine._delay(RuntimeError(), 1) for _ in range(200)]
    assert max(first) <= 0.5 and min(first) < 0.1  # full jitter: anywhere in [0, base]


def test_retry_after_forms():
    import email.utils

    import httpx2

    def exc(headers):
        class E(Exception):
            response = httpx2.Response(429, headers=headers)
        return E()

    assert retry_after(exc({"Retry-After": "2"})) == 2.0
    assert retry_after(exc({"retry-after-ms": "250"})) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(exc({"Retry-After": date})) <= 30
    assert retry_after(exc({"Retry-After": "99999"})) == 120.0  # capped
    assert retry_after(exc({})) is None


def test_classification():
    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError())
    assert not is_transient(ValueError("bad prompt"))
    assert describe(TimeoutError()) == "request timed out"


def test_secrets_are_scrubbed_from_errors(server):
    engine = RequestEngine(secrets=["sk-very-secret"], max_retries=0)

    async def leaky():
        raise ValueError("Incorrect API key provided: sk-very-secret")

    [error] = engine.run_all([leaky])
    assert "sk-very-secret" not in str(error) and "***" in str(error)


def test_requests_from_many_threads_share_one_loop(engine_and_client, server):
    from concurrent.futures import ThreadPoolExecutor

    server.latency = 0.05
    engine, client = engine_and_client(concurrency=6)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: engine.run_all([gen(client, f"t{i}")])[0], range(12)))
    assert all(not isinstance(r, Exception) for r in results)
    assert max_overlap(server.requests) <= 6
