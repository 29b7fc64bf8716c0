"""The HTTP layer a serving composes: its options and one connection to an OpenAI-compatible endpoint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, MutableMapping, TypeVar, Union

from ..errors import ConfigError
from ..keys import default_key_name, require_key, resolve_key
from ..options import Option
from .uploads import Uploader, UploadRule
from .urls import normalize_base_url, redact_url

if TYPE_CHECKING:  # the engine (asyncio) is imported when a connection opens, not by `pixmill --help`
    from .engine import RequestEngine

log = logging.getLogger("pixmill.http")

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def endpoint_options(base_url: str = DEFAULT_BASE_URL, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                     timeout: float = 120.0, max_retries: int = 5, when: str | None = None) -> tuple[Option, ...]:
    """The options of one connection (:class:`HTTPConnection`), with per-serving defaults.

    ``base_url`` enters the step key (the same model behind another endpoint is another provenance:
    a proxy or router may serve another snapshot); every other option only changes how requests
    run, so changing it never recomputes finished rows. ``when`` marks them as applying only under
    one setting of their owner (``"--engine openai"``), which help and the reference show.
    """
    return (
        Option("base_url", str, base_url, "API root: https://host, https://host/v1 and .../v1beta/openai/ all work",
               when=when),
        Option("api_key", str, None, "API key (prefer `pixmill keys set NAME` or the environment variable)",
               secret=True, when=when),
        Option("api_key_env", str, api_key_env, "environment variable holding the key", cache=False, when=when),
        Option("key_name", str, None, "stored key to use (`pixmill keys set NAME`); default: derived from "
               "--api-key-env (OPENAI_API_KEY -> openai, OPENROUTER_API_KEY -> openrouter)", cache=False, when=when),
        Option("concurrency", int, concurrency, "requests in flight at once", cache=False, when=when),
        Option("rpm", float, None, "at most this many requests per minute (retries included)", cache=False, when=when),
        Option("timeout", float, timeout, "seconds before one attempt is abandoned and retried", cache=False,
               when=when),
        Option("max_retries", int, max_retries, "retries on 429/5xx/timeouts/connection errors", cache=False,
               when=when),
        Option("max_response_mb", float, 128.0, "largest answer (or image download) accepted, in MiB; a larger "
               "one fails its row instead of filling memory", cache=False, when=when),
    )


ENDPOINT_OPTION_NAMES = frozenset(o.name for o in endpoint_options())


class HTTPConnection:
    """One serving's connection to an OpenAI-compatible endpoint: the key (explicit > stored >
    environment), the ``openai`` client with its own retries off, one :class:`RequestEngine`
    (bounded concurrency, rpm, timeout, retries with backoff) and the image uploads.

    ``config`` is the owner's resolved options (those of :func:`endpoint_options` and ``model``);
    its ``base_url`` is normalised in place, so "https://host" and "https://host/v1/" give the same
    step key. ``requires_key=False`` suits local servers (vLLM, LiteLLM without auth): a placeholder
    key is sent when none is configured. ``upload_rule`` says what the provider takes as it is.
    """

    def __init__(self, owner: str, config: MutableMapping[str, Any], *, requires_key: bool = True,
                 default_key_name: str = "openai", upload_rule: Callable[[], UploadRule] = UploadRule):
        self.owner = owner
        self.config = config
        self.requires_key = requires_key
        self.default_key_name = default_key_name
        self.upload_rule = upload_rule
        config["base_url"] = normalize_base_url(config.get("base_url") or DEFAULT_BASE_URL)
        if int(config.get("concurrency") or 1) < 1:
            raise ConfigError(f"{owner}: --concurrency must be at least 1", "pass --concurrency 8")
        self._client: Any = None
        self._engine: RequestEngine | None = None
        self._uploads: Uploader | None = None

    @property
    def concurrency(self) -> int:
        return int(self.config.get("concurrency") or 1)

    @property
    def key_name(self) -> str:
        return self.config.get("key_name") or default_key_name(self.config.get("api_key_env"), self.default_key_name)

    def api_key(self) -> str:
        """The key per the lookup order (explicit > stored > environment); raises when missing."""
        explicit, env = self.config.get("api_key"), self.config.get("api_key_env")
        if not self.requires_key:
            key, _ = resolve_key(explicit, self.key_name, env)
            return key or "EMPTY"
        return require_key(explicit, self.key_name, env, owner=self.owner)

    def max_response_bytes(self) -> int:
        """The largest answer body or image download accepted (``--max-response-mb``)."""
        return max(1, int(float(self.config.get("max_response_mb") or 128.0) * 1024**2))

    @staticmethod
    def redact(options: dict[str, Any]) -> dict[str, Any]:
        """``options`` as written to a manifest: the base URL without credentials or query."""
        return {**options, "base_url": redact_url(options["base_url"])} if "base_url" in options else options

    # -- life cycle ---------------------------------------------------------------------------
    def open(self) -> None:
        from .client import make_client
        from .engine import RequestEngine

        key = self.api_key()
        cfg = self.config
        self._engine = RequestEngine(concurrency=self.concurrency, rpm=cfg.get("rpm"), timeout=cfg.get("timeout"),
                                     max_retries=int(cfg.get("max_retries") or 0), secrets=[key],
                                     name=f"{self.owner} {cfg.get('model')}")
        self._client = make_client(cfg["base_url"], key, timeout=cfg.get("timeout"), concurrency=self.concurrency,
                                   max_response_bytes=self.max_response_bytes())
        log.debug("%s: %s at %s", self.owner, cfg.get("model"), redact_url(cfg["base_url"]))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            from .loop import close_quietly

            close_quietly(client.close())
        self._engine = None
        self._uploads = None

    @property
    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client (opened on first use)."""
        if self._client is None:
            self.open()
        return self._client

    @property
    def engine(self) -> RequestEngine:
        if self._engine is None:
            self.open()
        assert self._engine is not None
        return self._engine

    @property
    def uploads(self) -> Uploader:
        """Prepares the image uploads, each file once while the connection is open."""
        if self._uploads is None:
            self._uploads = Uploader(self.upload_rule())
        return self._uploads

    # -- requests -----------------------------------------------------------------------------
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
