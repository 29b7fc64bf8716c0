"""The base class of servings that talk only to an OpenAI-compatible HTTP API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Iterable, TypeVar, Union

from ..options import Option
from ..serving import Serving
from .connection import DEFAULT_BASE_URL, HTTPConnection, endpoint_options
from .uploads import Uploader, UploadRule

if TYPE_CHECKING:
    from .engine import RequestEngine

T = TypeVar("T")


def http_options(model: str | None = None, base_url: str = DEFAULT_BASE_URL, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 120.0, max_retries: int = 5) -> tuple[Option, ...]:
    """``--model`` and the connection's options (:func:`~pixmill.http.connection.endpoint_options`),
    with per-serving defaults. ``model`` enters the step key."""
    return (
        Option("model", str, model, "model name as the endpoint knows it", required=model is None),
        *endpoint_options(base_url=base_url, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout,
                          max_retries=max_retries),
    )


class OpenAICompatibleServing(Serving):
    """A serving backed by an OpenAI-compatible endpoint (OpenAI, Gemini, OpenRouter, vLLM, LiteLLM...).

    Subclasses declare ``options = (*http_options(model=...), ...their own...)`` and implement their
    capability methods with :meth:`run_requests`, passing one coroutine factory per request that uses
    :attr:`client`. The serving holds one :class:`~pixmill.http.connection.HTTPConnection` (``http``),
    which resolves the key (``check()`` fails before any work when it is missing), builds the client
    with its own retries off, and runs every request through one :class:`RequestEngine`.

    A serving that talks HTTP only in one of its modes composes an ``HTTPConnection`` itself instead
    (see the ``qwen-vl`` serving of pixmill-qwenvl).
    """

    requires_key: ClassVar[bool] = True
    default_key_name: ClassVar[str] = "openai"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.http = HTTPConnection(f"serving {self.name}", self.config, requires_key=self.requires_key,
                                   default_key_name=self.default_key_name, upload_rule=self.upload_rule)

    # -- configuration ------------------------------------------------------------------------
    @property
    def parallel_batches(self) -> int:  # type: ignore[override]
        # One batch (of one row, see rows_per_batch) per request slot. Not one more: the runner
        # keeps a result before the executor starts the next batch, so at any instant at most
        # `concurrency` rows are requested and not yet kept, and that is all a kill -9 can cost.
        return self.http.concurrency

    def rows_per_batch(self) -> int | None:
        return 1

    def takes_image_files(self) -> bool:
        return True

    def upload_rule(self) -> UploadRule:
        """How this serving's provider takes images (see :mod:`pixmill.http.uploads`); default: PNG,
        JPEG, WebP and GIF files as they are, anything else re-encoded as PNG."""
        return UploadRule()

    @property
    def uploads(self) -> Uploader:
        """Prepares this serving's image uploads, each file once while the serving is loaded."""
        return self.http.uploads

    def api_key(self) -> str:
        """The key per the lookup order (explicit > stored > environment); raises when missing."""
        return self.http.api_key()

    def check(self) -> None:
        self.http.api_key()

    def max_response_bytes(self) -> int:
        """The largest answer body or image download this serving accepts (``--max-response-mb``)."""
        return self.http.max_response_bytes()

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["options"] = self.http.redact(out["options"])
        return out

    # -- lifecycle ----------------------------------------------------------------------------
    def load(self) -> None:
        self.http.open()

    def unload(self) -> None:
        self.http.close()

    @property
    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client (after :meth:`load`)."""
        return self.http.client

    @property
    def engine(self) -> RequestEngine:
        return self.http.engine

    def run_requests(self, factories: Iterable[Callable[[], Awaitable[T]]]) -> list[Union[T, Exception]]:
        """Run one coroutine factory per request through the engine; a result or Exception each."""
        return self.http.run_requests(factories)

    def run_request_groups(self, groups: list[list[Callable[[], Awaitable[T]]]]) -> list[Union[list[T], Exception]]:
        """Several API calls per request, each an engine request of its own (see
        :meth:`HTTPConnection.run_request_groups`)."""
        return self.http.run_request_groups(groups)
