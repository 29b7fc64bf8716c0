"""The Serving base class and the request/result types of each capability.

A serving is a model backend. It is registered as a class; the executor instantiates it inside the
worker that uses it, calls :meth:`Serving.load` once, then calls the capability method with batches.
Capability methods return one entry per request, in order: a result, or an ``Exception`` for a
request that failed (the row is recorded as failed with ``str(exc)``; the rest of the batch goes on).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from .options import Option, key_options, public_options, resolve_options

TEXT_TO_IMAGE = "text-to-image"
IMAGE_EDIT = "image-edit"
VISION_CHAT = "vision-chat"
TEXT_LLM = "text-llm"
UPSCALE = "upscale"
IMAGE_TEXT_EMBEDDING = "image-text-embedding"  # CLIP / SigLIP: images and texts in one space
MODERATION = "moderation"  # text safety classification (an OpenAI-compatible /moderations endpoint)


@dataclass
class ImageRequest:
    """Text-to-image: make ``len(seeds)`` images of ``prompt``."""

    prompt: str
    seeds: list[int]
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Conditioning images (PIL), present only when the serving asks for them: see
    # Serving.control_image_count() and Serving.uses_reference_images().
    control_images: list[Any] = field(default_factory=list)
    reference_images: list[Any] = field(default_factory=list)


@dataclass
class EditRequest:
    """Image editing: apply ``prompt`` to the reference ``images``, in order: PIL images, or
    :class:`pixmill.image_files.ImageFile` references for servings whose ``takes_image_files()``
    is true (``mask`` likewise)."""

    prompt: str
    images: list[Any]
    seeds: list[int]
    mask: Any = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    control_images: list[Any] = field(default_factory=list)
    reference_images: list[Any] = field(default_factory=list)


@dataclass
class UpscaleRequest:
    """Upscaling: make ``image`` (a PIL image) ``scale`` times larger. ``prompt`` guides servings
    that take one (the SD x4 upscaler); ``seed`` feeds those that add noise."""

    image: Any
    seed: int
    scale: float | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneratedImage:
    """One image a serving made, with its provenance.

    ``image`` is a PIL image, or ``data`` holds encoded bytes as an API returned them (saved as is,
    never re-encoded) with ``suffix`` such as ``".png"``. ``params`` is the provenance recorded with
    the image: model, seed, size, steps, guidance, the exact prompt sent, and so on.
    """

    image: Any = None
    data: bytes | None = None
    suffix: str = ".png"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatRequest:
    """A chat turn for a text LLM or a vision-language model.

    ``messages`` are OpenAI-style chat messages whose content is a string or a list of parts;
    image parts are ``{"type": "image", "image": PIL.Image}`` (an
    :class:`pixmill.image_files.ImageFile` for servings whose ``takes_image_files()`` is true) and
    servings convert them to their own form. ``json`` asks for a JSON object answer where the backend supports it.
    """

    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    json: bool = False
    logprobs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatResponse:
    """The answer to a :class:`ChatRequest`: text, and token logprobs where asked and available."""

    text: str
    logprobs: list[dict[str, float]] | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModerationResult:
    """The verdict on one text: ``flagged``, the categories that flagged it and every category's
    score (0-1), as the moderation endpoint returned them."""

    flagged: bool
    categories: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def release_cuda_memory() -> None:
    """Return cached CUDA memory after a serving dropped its weights (no-op without a GPU or torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - a serving without torch has nothing to release
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# Servings made in this process: a Python-API pipeline checks them all before its first step, as
# the CLI does, since DataFlow-MM-shaped scripts make their servings before running any operator.
_CREATED: weakref.WeakSet = weakref.WeakSet()


def check_servings(servings: Any = None) -> None:
    """Call :meth:`Serving.check` once on each of ``servings`` (default: every serving made in this
    process so far) that was not checked yet."""
    for serving in list(_CREATED if servings is None else servings):
        if not getattr(serving, "_checked", False):
            serving.check()
            serving._checked = True


ImagesOrError = Union[list[GeneratedImage], Exception]
ChatOrError = Union[ChatResponse, Exception]
ModerationOrError = Union[ModerationResult, Exception]


class Serving:
    """A model backend. Subclasses set ``name``, ``capabilities`` and ``options``, and implement the
    methods of their capabilities:

    - ``text-to-image``: :meth:`generate`
    - ``image-edit``: :meth:`edit`
    - ``vision-chat`` and ``text-llm``: :meth:`chat`
    - ``upscale``: :meth:`upscale`
    - ``image-text-embedding``: :meth:`embed_images` and :meth:`embed_texts`
    - ``moderation``: :meth:`moderate`

    ``parallel_batches`` tells the local executor how many batches may be in flight at once
    (an HTTP serving with ``--concurrency 32`` raises it; a GPU serving keeps 1).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    options: ClassVar[tuple[Option, ...]] = ()
    parallel_batches: int = 1

    def __init__(self, **options: Any):
        self.config = resolve_options(self.options, options, owner=f"serving {self.name}")
        _CREATED.add(self)

    def identity(self) -> dict[str, Any]:
        """What enters the step key: the serving's name, version and output-affecting options."""
        return {"serving": self.name, "version": self.version, "options": key_options(self.options, self.config)}

    def describe(self) -> dict[str, Any]:
        return {"serving": self.name, "options": public_options(self.options, self.config)}

    def spec(self) -> tuple[type, dict[str, Any]]:
        """How to rebuild this serving in another process: (class, options)."""
        return type(self), dict(self.config)

    def check(self) -> None:
        """Fail fast, before any work, on a setup error (missing key, model folder not found).

        Called once in the main process; must not load weights. Default: nothing.
        """

    def capability_hint(self, capability: str) -> str | None:
        """Why this serving, as configured, cannot do ``capability``, and what can (shown when an
        operator needs it); ``None`` for the generic hint. A serving whose capabilities depend on
        its model (a checkpoint that is an upscaler, say) names the operator or serving to use."""
        return None

    def devices(self) -> list[str]:
        """The devices to run one replica each on (``"cuda:0"``, ``"cpu"``...).

        More than one makes the local executor start one worker process per device, each loading
        its own replica and pulling batches from a shared queue. Default: none (run in-process).
        """
        return []

    def images_per_call(self) -> int | None:
        """How many images one model call should make (the image operators size their batches to
        fill it), or ``None`` for no preference (one operator batch per call). Local models pick
        this from the model and device; HTTP servings leave it to their concurrency."""
        return None

    def images_per_prompt(self) -> int | None:
        """The serving's own default number of images per prompt, or ``None`` (the operator's
        ``--images-per-prompt`` wins over it)."""
        return None

    def control_image_count(self) -> int:
        """How many control images a request carries: one per ControlNet the serving runs (a single
        image may serve them all), or 0 (the default) when it takes none. The image operators then
        read them from the row's control field into ``control_images``."""
        return 0

    def uses_reference_images(self) -> bool:
        """Whether requests carry reference images (an IP-Adapter's style or subject references)
        from the row's reference field, in ``reference_images``. Default: no."""
        return False

    def takes_image_files(self) -> bool:
        """Whether the operators may hand this serving input images as
        :class:`pixmill.image_files.ImageFile` references (path and header, not decoded) instead of
        PIL images. HTTP servings say yes: they upload a file's bytes as they are when the provider
        takes them, and decode only the files they must resize or re-encode. Default: no."""
        return False

    def rows_per_batch(self) -> int | None:
        """The rows per operator batch this serving prefers, or ``None`` for the operator's default
        (``--batch-size`` wins over both). HTTP servings answer 1: each row is its own request, so
        one-row batches let the runner keep each result the moment it arrives."""
        return None

    def replica_resources(self) -> dict[str, float] | None:
        """What one replica of this serving needs, for executors that place replicas on a cluster:
        ``{"gpus": 1.0, "cpus": 1}`` (fractions allowed), or ``None`` for a serving that loads no
        local model (HTTP clients, in-process helpers): its steps then stay in the driver process.

        Answered from the options alone, without importing torch (the driver may have no GPU).
        Default: ``None``.
        """
        return None

    def use_device(self, device: str) -> None:
        """Called in a worker process before :meth:`load`: this replica runs on ``device``.

        The worker has already restricted ``CUDA_VISIBLE_DEVICES`` to its GPU, so a CUDA device
        arrives as ``"cuda:0"``. Default: nothing.
        """

    def load(self) -> None:
        """Bring up weights or clients. Called once per worker before the first batch."""

    def unload(self) -> None:
        """Free what :meth:`load` took (GPU memory, connections)."""

    def generate(self, requests: list[ImageRequest]) -> list[ImagesOrError]:
        raise NotImplementedError(f"serving {self.name} cannot do {TEXT_TO_IMAGE}")

    def edit(self, requests: list[EditRequest]) -> list[ImagesOrError]:
        raise NotImplementedError(f"serving {self.name} cannot do {IMAGE_EDIT}")

    def chat(self, requests: list[ChatRequest]) -> list[ChatOrError]:
        raise NotImplementedError(f"serving {self.name} cannot do {VISION_CHAT}")

    def upscale(self, requests: list[UpscaleRequest]) -> list[ImagesOrError]:
        """One entry per request: a one-image list (the larger image, with its provenance) or an
        exception for a request that failed."""
        raise NotImplementedError(f"serving {self.name} cannot do {UPSCALE}")
    def embed_images(self, images: list[Any]) -> Any:
        """L2-normalised embeddings of PIL images: an array of shape (len(images), dim)."""
        raise NotImplementedError(f"serving {self.name} cannot do {IMAGE_TEXT_EMBEDDING}")

    def embed_texts(self, texts: list[str]) -> Any:
        """L2-normalised embeddings of texts, in the same space as :meth:`embed_images`."""
        raise NotImplementedError(f"serving {self.name} cannot do {IMAGE_TEXT_EMBEDDING}")

    def moderate(self, texts: list[str]) -> list[ModerationOrError]:
        """One :class:`ModerationResult` (or Exception) per text, in order."""
        raise NotImplementedError(f"serving {self.name} cannot do {MODERATION}")
