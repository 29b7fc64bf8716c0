"""The base class of servings that talk to an OpenAI-compatible HTTP API."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, ClassVar, Iterable, TypeVar, Union

from ..keys import default_key_name, require_key, resolve_key
from ..options import Option
from ..serving import Serving
from .engine import RequestEngine
from .urls import normalize_base_url, redact_url

log = logging.getLogger("pixmill.http")

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def http_options(model: str | None = None, base_url: str = DEFAULT_BASE_URL, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 120.0, max_retries: int = 5) -> tuple[Option, ...]:
    """The options every OpenAI-compatible serving shares, with per-serving defaults.

    ``model`` and ``base_url`` enter the step key (the same model behind another endpoint is another
    provenance: a proxy or router may serve another snapshot); every other option only changes how
    requests run, so changing it never recomputes finished rows.
    """
    return (
        Option("model", str, model, "model name as the endpoint knows it", required=model is None),
        Option("base_url", str, base_url, "API root: https://host, https://host/v1 and .../v1beta/openai/ all work"),
        Option("api_key", str, None, "API key (prefer `pixmill keys set NAME` or the environment variable)",
               secret=True),
        Option("api_key_env", str, api_key_env, "environment variable holding the key", cache=False),
        Option("key_name", str, None, "stored key to use (`pixmill keys set NAME`); default: derived from "
               "--api-key-env (OPENAI_API_KEY -> openai, OPENROUTER_API_KEY -> openrouter)", cache=False),
        Option("concurrency", int, concurrency, "requests in flight at once", cache=False),
        Option("rpm", float, None, "at most this many requests per minute (retries included)", cache=False),
        Option("timeout", float, timeout, "seconds before one attempt is abandoned and retried", cache=False),
        Option("max_retries", int, max_retries, "retries on 429/5xx/timeouts/connection errors", cache=False),
        Option("max_response_mb", float, 128.0, "largest answer (or image download) accepted, in MiB; a larger "
               "one fails its row instead of filling memory", cache=False),
    )


class OpenAICompatibleServing(Serving):
    """A serving backed by an OpenAI-compatible endpoint (OpenAI, Gemini, OpenRouter, vLLM, LiteLLM...).

    Subclasses declare ``options = (*http_options(model=...), ...their own...)`` and implement their
    capability methods with :meth:`run_requests`, passing one coroutine factory per request that uses
    :attr:`client`. The base class resolves the key (``check()`` fails before any work when it is
    missing), builds the client with its own retries off, and runs every request through one
    :class:`RequestEngine` (bounded concurrency, rpm, timeout, retries with backoff).

    ``requires_key = False`` suits local servers (vLLM, LiteLLM without auth): a placeholder key is
    sent when none is configured.
    """

    requires_key: ClassVar[bool] = True
    default_key_name: ClassVar[str] = "openai"

    def __init__(self, **options: Any):
        super().__init__(**options)
        # Normalised once, so "https://host" and "https://host/v1/" give the same step key.
        self.config["base_url"] = normalize_base_url(self.config.get("base_url") or DEFAULT_BASE_URL)
        if int(self.config.get("concurrency") or 1) < 1:
            from ..errors import ConfigError

            raise ConfigError(f"serving {self.name}: --concurrency must be at least 1", "pass --concurrency 8")
        self._client: Any = None
        self._engine: RequestEngine | None = None

    # -- configuration ------------------------------------------------------------------------
    @property
    def parallel_batches(self) -> int:  # type: ignore[override]
        # Enough batches in flight to keep every request slot busy even with one row per batch;
        # the semaphore, not the thread count, bounds what is actually on the wire.
        return int(self.config.get("concurrency") or 1) + 1

    @property
    def key_name(self) -> str:
        return self.config.get("key_name") or default_key_name(self.config.get("api_key_env"), self.default_key_name)

    def api_key(self) -> str:
        """The key per the lookup order (explicit > stored > environment); raises when missing."""
        explicit, env = self.config.get("api_key"), self.config.get("api_key_env")
        if not self.requires_key:
            key, _ = resolve_key(explicit, self.key_name, env)
            return key or "EMPTY"
        return require_key(explicit, self.key_name, env, owner=f"serving {self.name}")

    def check(self) -> None:
        self.api_key()

    def max_response_bytes(self) -> int:
        """The largest answer body or image download this serving accepts (``--max-response-mb``)."""
        return max(1, int(float(self.config.get("max_response_mb") or 128.0) * 1024**2))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["options"]["base_url"] = redact_url(out["options"]["base_url"])
        return out

    # -- lifecycle ----------------------------------------------------------------------------
    def load(self) -> None:
        from .client import make_client

        key = self.api_key()
        cfg = self.config
        self._engine = RequestEngine(concurrency=int(cfg["concurrency"]), rpm=cfg.get("rpm"),
                                     timeout=cfg.get("timeout"), max_retries=int(cfg.get("max_retries") or 0),
                                     secrets=[key], name=f"{self.name} {cfg.get('model')}")
        self._client = make_client(cfg["base_url"], key, timeout=cfg.get("timeout"),
                                   concurrency=int(cfg["concurrency"]), max_response_bytes=self.max_response_bytes())
        log.debug("%s: %s at %s", self.name, cfg.get("model"), redact_url(cfg["base_url"]))

    def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            from .loop import run_sync

            try:
                run_sync(client.close(), timeout=10)
            except Exception:  # noqa: BLE001 - closing a pool must never fail a run
                log.debug("closing the HTTP client failed", exc_info=True)
        self._engine = None

    @property
    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client (after :meth:`load`)."""
        if self._client is None:
            self.load()
        return self._client

    @property
    def engine(self) -> RequestEngine:
        if self._engine is None:
            self.load()
        assert self._engine is not None
        return self._engine

    def run_requests(self, factories: Iterable[Callable[[], Awaitable[T]]]) -> list[Union[T, Exception]]:
        """Run one coroutine factory per request through the engine; a result or Exception each."""
        engine = self.engine
        _ = self.client  # built before the coroutines need it
        return engine.run_all(factories)

    def run_request_groups(self, groups: list[list[Callable[[], Awaitable[T]]]]) -> list[Union[list[T], Exception]]:
        """Run several API calls per request (one image per call, say), each an engine request of
        its own (own slot, timeout and retries), all concurrently. A request's entry is the list of
        its calls' results in order, or the first of its calls' errors."""
        flat = [f for group in groups for f in group]
        results = self.run_requests(flat)
        out: list[Union[list[T], Exception]] = []
        cursor = 0
        for group in groups:
            part = results[cursor:cursor + len(group)]
            cursor += len(group)
            error = next((r for r in part if isinstance(r, Exception)), None)
            out.append(error if error is not None else list(part))  # type: ignore[arg-type]
        return out
