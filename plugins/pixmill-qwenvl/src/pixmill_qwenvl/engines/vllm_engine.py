"""The ``vllm`` engine: ``vllm.LLM`` offline batch inference in this process (GPU).

Only :meth:`VLLMEngine.load` and the ``llm.generate`` call touch vLLM. Building the inputs
(:func:`build_vllm_inputs`: the chat-templated prompt plus ``multi_modal_data`` with **every** image
of the row, in order) and reading the outputs (:func:`to_chat_response`) are plain functions,
tested without vLLM.
"""

from __future__ import annotations

import logging
from typing import Any

from pixmill.serving import ChatRequest, ChatResponse

from ..messages import render_prompt, split_images, with_defaults

log = logging.getLogger("pixmill.qwenvl")


def build_vllm_inputs(request: ChatRequest, tokenizer: Any, min_pixels: int, max_pixels: int) -> dict[str, Any]:
    """One vLLM prompt dict: ``{"prompt": text, "multi_modal_data": {"image": [all images]}}``."""
    messages, images = split_images(request.messages, min_pixels, max_pixels)
    prompt: dict[str, Any] = {"prompt": render_prompt(tokenizer, messages)}
    if images:
        # A list even for one image: vLLM then maps the i-th <|image_pad|> to the i-th image.
        prompt["multi_modal_data"] = {"image": images}
    return prompt


def sampling_kwargs(request: ChatRequest, config: dict[str, Any]) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments for one request."""
    kwargs: dict[str, Any] = {
        "temperature": float(request.temperature or 0.0),
        "top_p": float(config.get("top_p") or 1.0),
        "max_tokens": int(request.max_tokens or 512),
    }
    if request.logprobs:
        kwargs["logprobs"] = int(config.get("top_logprobs") or 20)
    return kwargs


def to_chat_response(output: Any) -> ChatResponse:
    """A :class:`ChatResponse` from one ``vllm.RequestOutput`` (text, and top logprobs per token)."""
    completion = output.outputs[0]
    logprobs = None
    if getattr(completion, "logprobs", None):
        logprobs = []
        for position in completion.logprobs:  # dict[token_id, Logprob(logprob, rank, decoded_token)]
            top: dict[str, float] = {}
            for token_id, entry in position.items():
                token = entry.decoded_token if entry.decoded_token is not None else str(token_id)
                top[token] = max(top.get(token, float("-inf")), float(entry.logprob))
            logprobs.append(top)
    return ChatResponse(text=completion.text, logprobs=logprobs,
                        params={"engine": "vllm", "finish_reason": getattr(completion, "finish_reason", None),
                                "tokens": len(getattr(completion, "token_ids", ()) or ())})


class VLLMEngine:
    """In-process ``vllm.LLM``: one ``generate`` call per batch, every row's images in its prompt."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.llm: Any = None
        self.tokenizer: Any = None

    def load(self) -> None:
        from vllm import LLM

        cfg = self.config
        kwargs: dict[str, Any] = {
            "model": cfg["model"],
            "tensor_parallel_size": int(cfg.get("tensor_parallel_size") or 1),
            "gpu_memory_utilization": float(cfg.get("gpu_memory_utilization") or 0.9),
            "limit_mm_per_prompt": {"image": int(cfg.get("limit_mm_per_prompt") or 8)},
            # Images arrive already resized to these bounds; passing them keeps vLLM's processor
            # from applying the checkpoint's own (larger) defaults on top.
            "mm_processor_kwargs": {"min_pixels": int(cfg["min_pixels"]), "max_pixels": int(cfg["max_pixels"])},
            "max_logprobs": max(20, int(cfg.get("top_logprobs") or 20)),
        }
        if cfg.get("max_model_len"):
            kwargs["max_model_len"] = int(cfg["max_model_len"])
        if cfg.get("dtype") and cfg["dtype"] != "auto":
            kwargs["dtype"] = cfg["dtype"]
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def unload(self) -> None:
        self.llm = self.tokenizer = None
        try:
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse | Exception]:
        from vllm import SamplingParams

        cfg = self.config
        out: list[ChatResponse | Exception | None] = [None] * len(requests)
        prompts, params, slots = [], [], []
        for i, req in enumerate(requests):
            req = with_defaults(req, cfg)
            try:
                prompts.append(build_vllm_inputs(req, self.tokenizer, cfg["min_pixels"], cfg["max_pixels"]))
            except Exception as exc:  # noqa: BLE001 - a bad image fails its row only
                out[i] = exc
                continue
            params.append(SamplingParams(**sampling_kwargs(req, cfg)))
            slots.append(i)
        if prompts:
            try:
                results = self.llm.generate(prompts, params, use_tqdm=False)
            except Exception as exc:  # noqa: BLE001 - e.g. one prompt longer than max_model_len
                if len(prompts) == 1:
                    out[slots[0]] = exc
                    return out  # type: ignore[return-value]
                log.warning("vLLM generate on %d rows failed (%s); retrying one by one", len(prompts), exc)
                for slot in slots:
                    out[slot] = self.chat([requests[slot]])[0]
                return out  # type: ignore[return-value]
            for slot, result in zip(slots, results, strict=True):
                out[slot] = to_chat_response(result)
        return out  # type: ignore[return-value]
