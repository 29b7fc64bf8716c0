"""The ``qwen-vl`` serving: Qwen2.5-VL (or another Qwen-style VLM) for judging and captioning.

One option set, three engines, picked by ``--engine`` (never guessed from the model name):

- ``transformers``: in-process Hugging Face transformers, CPU or GPU, batched (the default);
- ``vllm``: in-process ``vllm.LLM`` offline batch inference (tensor parallel, GPU);
- ``openai``: any OpenAI-compatible server, e.g. ``vllm serve Qwen/Qwen2.5-VL-7B-Instruct``, through
  pixmill's shared HTTP machinery (concurrency, rpm, retries with backoff, timeouts).

``min_pixels``/``max_pixels`` bound every image the same way for all three (:mod:`.images`).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from pixmill.errors import ConfigError
from pixmill.http import HTTPConnection, endpoint_options
from pixmill.http.uploads import UploadRule, upload_options
from pixmill.options import Option, key_options
from pixmill.serving import VISION_CHAT, ChatRequest, ChatResponse, Serving

from .images import FACTOR, upload_size
from .messages import with_defaults

log = logging.getLogger("pixmill.qwenvl")

ENGINES = ("transformers", "vllm", "openai")
DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name, not ./x or /abs/path
OVER_HTTP = "--engine openai"

# The HTTP layer's options, declared by pixmill.http and applying only with --engine openai.
_HTTP_OPTIONS = (
    *endpoint_options(base_url="http://localhost:8000/v1", api_key_env="VLLM_API_KEY", concurrency=16, timeout=300.0,
                      when=OVER_HTTP),
    *(replace(o, when=OVER_HTTP) for o in upload_options(
        "png", what="images outside the pixel bounds (or not RGB PNG/JPEG/WebP) are resized and re-encoded for upload")),
    Option("json_mode", str, "json_object", "how JSON answers are requested: response_format json_object, or by "
           "the prompt alone (for servers that reject response_format)", choices=("json_object", "prompt"),
           when=OVER_HTTP),
)
_HTTP_NAMES = frozenset(o.name for o in _HTTP_OPTIONS)

# Options of the in-process engines only: left out of the step key of the others, so that e.g. a
# --dtype never splits the cache of a run against a server.
_IN_PROCESS_ONLY = frozenset({"dtype", "top_logprobs", "device", "tensor_parallel_size", "gpu_memory_utilization",
                              "max_model_len", "limit_mm_per_prompt"})


def _options() -> tuple[Option, ...]:
    return (
        Option("engine", str, "transformers", "transformers (in-process, CPU/GPU), vllm (in-process vllm.LLM), "
               "or openai (an OpenAI-compatible server such as `vllm serve`)", choices=ENGINES),
        Option("model", str, DEFAULT_MODEL, "Hugging Face model id or local folder (transformers, vllm); the served "
               "model name (openai)"),
        Option("min_pixels", int, 4 * FACTOR * FACTOR, "smallest image area sent to the model (upscaled to it)"),
        Option("max_pixels", int, 1280 * FACTOR * FACTOR, "largest image area sent to the model (downscaled to it)"),
        Option("temperature", float, 0.0, "sampling temperature when the operator sets none (0: greedy)"),
        Option("top_p", float, 1.0, "nucleus sampling (with temperature > 0)"),
        Option("max_tokens", int, 512, "longest answer when the operator sets none"),
        Option("top_logprobs", int, 20, "alternatives kept per token when logprobs are asked (vqascore); "
               "the openai engine gets what the server sends"),
        Option("dtype", str, "auto", "weights dtype (transformers, vllm); auto: bfloat16 on GPU, float32 on CPU",
               choices=("auto", "bfloat16", "float16", "float32")),
        Option("device", str, None, "transformers: cpu, cuda, cuda:1 (default: cuda when present)", cache=False),
        Option("tensor_parallel_size", int, 1, "vllm: GPUs to shard the model over", cache=False),
        Option("gpu_memory_utilization", float, 0.9, "vllm: share of GPU memory it may take", cache=False),
        Option("max_model_len", int, None, "vllm: context length (default: the model's)", cache=False),
        Option("limit_mm_per_prompt", int, 8, "vllm: most images in one prompt", cache=False),
        *_HTTP_OPTIONS,
    )


class QwenVLServing(Serving):
    """Qwen2.5-VL for the ``vision-chat`` capability (``judge``, ``caption``), with three engines.

    ``pixmill run ... judge --serving qwen-vl --engine vllm --model Qwen/Qwen2.5-VL-7B-Instruct``;
    ``--engine openai --base-url http://gpu-box:8000`` talks to ``vllm serve`` instead, through an
    :class:`~pixmill.http.HTTPConnection` (``http``) that only that engine has.
    """

    name = "qwen-vl"
    version = "1"
    description = "Qwen2.5-VL vision-language model: transformers, vllm (in-process) or an OpenAI-compatible server"
    capabilities = frozenset({VISION_CHAT})
    options = _options()

    def __init__(self, **options: Any):
        super().__init__(**options)
        cfg = self.config
        lo, hi = int(cfg["min_pixels"]), int(cfg["max_pixels"])
        if lo < 1 or hi < FACTOR * FACTOR or lo > hi:
            raise ConfigError(f"serving {self.name}: --min-pixels {lo} / --max-pixels {hi} are not a valid range",
                              f"use 1 <= min-pixels <= max-pixels and max-pixels >= {FACTOR * FACTOR}")
        self._local: Any = None
        # A local `vllm serve` usually has no key: one is sent when configured.
        self.http = HTTPConnection(f"serving {self.name}", cfg, requires_key=False, default_key_name="vllm",
                                   upload_rule=self.upload_rule) if self.engine_name == "openai" else None

    @property
    def engine_name(self) -> str:
        return str(self.config["engine"])

    def _applies(self, option: str) -> bool:
        if option in _HTTP_NAMES:
            return self.http is not None
        return self.http is None or option not in _IN_PROCESS_ONLY

    @property
    def parallel_batches(self) -> int:  # type: ignore[override]
        # HTTP: one batch per request slot; in-process: one batch at a time (the model already
        # batches on the device, and two generate() calls would fight over it).
        return self.http.concurrency if self.http else 1

    def rows_per_batch(self) -> int | None:
        # HTTP: one row per batch, kept as soon as it is answered; in-process: the operator's
        # batches (the model runs them as one batch on the device).
        return 1 if self.http else None

    def takes_image_files(self) -> bool:
        # Every engine takes file references: HTTP uploads files as they are when it can, the
        # in-process engines decode them in their own resize (images.fit_pixels).
        return True

    def replica_resources(self) -> dict[str, float] | None:
        # HTTP stays on the driver (keys, rate limits); in-process engines are placed by their options.
        if self.http is not None:
            return None
        if self.engine_name == "vllm":
            return {"gpus": float(self.config["tensor_parallel_size"] or 1), "cpus": 1.0}
        on_cpu = str(self.config.get("device") or "").startswith("cpu")
        return {"gpus": 0.0 if on_cpu else 1.0, "cpus": 1.0}

    def identity(self) -> dict[str, Any]:
        opts = {k: v for k, v in key_options(self.options, self.config).items() if self._applies(k)}
        return {"serving": self.name, "version": self.version, "options": opts}

    def describe(self) -> dict[str, Any]:
        # Every option, as given (a pipeline.yaml rebuilds the step from it), the base URL redacted.
        out = super().describe()
        out["options"] = HTTPConnection.redact(out["options"])
        return out

    # -- fail fast ----------------------------------------------------------------------------
    def check(self) -> None:
        if self.http is not None:
            self.http.api_key()
            return
        engine = self.engine_name
        ignored = [o.flag for o in _HTTP_OPTIONS if self.config.get(o.name) != o.default]
        if ignored:  # e.g. a --base-url without --engine openai: the model would run here instead
            log.warning("serving %s: %s ignored: used only with %s (this step has --engine %s)", self.name,
                        ", ".join(ignored), OVER_HTTP, engine)
        needs = {"transformers": ("torch", "transformers"), "vllm": ("vllm",)}[engine]
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            extra = "vllm" if engine == "vllm" else "transformers"
            raise ConfigError(f"serving {self.name}: --engine {engine} needs {', '.join(missing)}, not installed",
                              f"pip install 'pixmill-qwenvl[{extra}]'"
                              + (", or serve the model with `vllm serve` and use --engine openai" if engine == "vllm" else ""))
        model = str(self.config["model"])
        if not Path(model).expanduser().exists() and not _HUB_ID.match(model):
            raise ConfigError(f"serving {self.name}: model {model!r} is neither a folder nor a Hugging Face model id",
                              "pass --model Qwen/Qwen2.5-VL-7B-Instruct or the path of a downloaded model folder")

    # -- lifecycle ----------------------------------------------------------------------------
    def load(self) -> None:
        if self.http is not None:
            self.http.open()
            return
        if self._local is None:
            if self.engine_name == "vllm":
                from .engines.vllm_engine import VLLMEngine

                self._local = VLLMEngine(self.config)
            else:
                from .engines.hf import TransformersEngine

                self._local = TransformersEngine(self.config)
        self._local.load()

    def unload(self) -> None:
        if self.http is not None:
            self.http.close()
            return
        if self._local is not None:
            self._local.unload()
            self._local = None

    # -- the capability -----------------------------------------------------------------------
    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse | Exception]:
        if self.http is not None:
            return self._chat_http(self.http, requests)
        if self._local is None:
            self.load()
        return self._local.chat(requests)

    def upload_rule(self) -> UploadRule:
        """PNG, JPEG and WebP files in RGB within the pixel bounds go as they are; anything else is
        resized to the bounds (the same resize the in-process engines use) and encoded in
        ``--upload-format``."""
        cfg = self.config
        return UploadRule(formats=frozenset({"PNG", "JPEG", "WEBP"}), modes=frozenset({"RGB"}),
                          size=partial(upload_size, min_pixels=int(cfg["min_pixels"]), max_pixels=int(cfg["max_pixels"])),
                          encoding=cfg["upload_format"], quality=int(cfg["upload_quality"]), data_url=True)

    def _chat_http(self, http: HTTPConnection, requests: list[ChatRequest]) -> list[ChatResponse | Exception]:
        from pixmill.http.chat import chat_body, post_chat

        cfg = self.config
        model, json_mode = cfg["model"], cfg["json_mode"]
        top_p = cfg.get("top_p")
        extra = {"top_p": top_p} if top_p is not None and top_p != 1.0 else None
        client, uploads = http.client, http.uploads
        for req in requests:  # start every upload of the batch before waiting for the first
            for image in _images(req.messages):
                uploads.submit(image)
        out: list[ChatResponse | Exception | None] = [None] * len(requests)
        factories, slots = [], []
        for i, req in enumerate(requests):
            try:  # the body is built here, once: the event loop only sends it (again on a retry)
                body = chat_body(model, with_defaults(req, cfg), json_mode, uploader=uploads, extra_body=extra)
            except Exception as exc:  # noqa: BLE001 - a bad image fails its row only
                out[i] = exc
                continue
            factories.append(lambda body=body: post_chat(client, model, body, provenance={"engine": "openai"}))
            slots.append(i)
        for slot, answer in zip(slots, http.run_requests(factories), strict=True):
            out[slot] = answer
        return out  # type: ignore[return-value]


def _images(messages: list[dict[str, Any]]) -> list[Any]:
    return [p["image"] for m in messages if isinstance(m.get("content"), list)
            for p in m["content"] if isinstance(p, dict) and p.get("type") == "image"]
