"""The ``transformers`` engine: Qwen2.5-VL in this process, on CPU or GPU, batched ``generate``.

The prompt and images come from :mod:`pixmill_qwenvl.messages` (shared with vLLM); the processor
expands each ``<|image_pad|>`` to the image's token count and makes ``pixel_values`` for every
image of every row in the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pixmill.serving import ChatRequest, ChatResponse

from ..messages import render_prompt, split_images, with_defaults

log = logging.getLogger("pixmill.qwenvl")

_PROCESSOR_CLASS: Any = None


def image_only_processor_class() -> Any:
    """``Qwen2_5_VLProcessor`` without a video processor.

    transformers builds the stock processor only with a video processor, which needs torchvision;
    a judge never sends video, so this subclass drops that requirement and keeps everything else
    (image token expansion, batching, chat templates) as transformers does it.
    """
    global _PROCESSOR_CLASS
    if _PROCESSOR_CLASS is None:
        from transformers.models.qwen2_5_vl import Qwen2_5_VLProcessor

        class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):
            """Qwen2.5-VL processor for images and text only (no torchvision needed)."""

            def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
                         **kwargs: Any):
                super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        _PROCESSOR_CLASS = ImageOnlyQwenVLProcessor
    return _PROCESSOR_CLASS


def load_processor(model: str) -> Any:
    """The model's processor: transformers' own where it builds, else the image-only one."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(model)
        if hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
            return processor
    except Exception as exc:  # noqa: BLE001 - typically "needs torchvision" for the video processor
        log.debug("AutoProcessor for %s failed (%s); using the image-only processor", model, exc)
    tokenizer = AutoTokenizer.from_pretrained(model)
    image_processor = AutoImageProcessor.from_pretrained(model)
    template = getattr(tokenizer, "chat_template", None) or _folder_template(model)
    return image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def _folder_template(model: str) -> str | None:
    folder = Path(model)
    for name in ("chat_template.jinja", "chat_template.json"):
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if name.endswith(".json"):
                import json

                return json.loads(text).get("chat_template")
            return text
    return None


def load_model(model: str, dtype: Any, device: str) -> Any:
    """The model through ``Qwen2_5_VLForConditionalGeneration.from_pretrained`` (other VLMs: Auto)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    if config.model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration as model_cls
    else:
        from transformers import AutoModelForImageTextToText as model_cls
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device.startswith("cuda"):
        kwargs["device_map"] = device  # load straight to the GPU, never a full CPU copy first
    loaded = model_cls.from_pretrained(model, **kwargs)
    return loaded.to(device).eval()


def torch_dtype(name: str | None, device: str) -> Any:
    import torch

    if not name or name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


class TransformersEngine:
    """Batched ``generate`` on a Hugging Face model. ``model``/``processor`` may be given already
    loaded (benchmarks build a 7B-sized random model in memory instead of writing it to disk)."""

    def __init__(self, config: dict[str, Any], model: Any = None, processor: Any = None):
        self.config = config
        self.model = model
        self.processor = processor
        self.device = "cpu"
        self.dtype: Any = None

    def load(self) -> None:
        import torch

        cfg = self.config
        self.device = cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch_dtype(cfg.get("dtype"), self.device)
        if self.model is None:
            self.model = load_model(cfg["model"], self.dtype, self.device)
        else:
            self.dtype = next(self.model.parameters()).dtype
            self.device = str(next(self.model.parameters()).device)
        if self.processor is None:
            self.processor = load_processor(cfg["model"])
        self.processor.tokenizer.padding_side = "left"  # batched generation continues at the right edge

    def unload(self) -> None:
        self.model = self.processor = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse | Exception]:
        requests = [with_defaults(r, self.config) for r in requests]
        out: list[ChatResponse | Exception | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):  # one generate() per sampling setting
            groups.setdefault((req.max_tokens, req.temperature, req.logprobs), []).append(i)
        for indices in groups.values():
            for i, answer in zip(indices, self._generate_isolated([requests[i] for i in indices]), strict=True):
                out[i] = answer
        return out  # type: ignore[return-value]

    def _generate_isolated(self, requests: list[ChatRequest]) -> list[ChatResponse | Exception]:
        try:
            return self._generate(requests)
        except Exception as exc:  # noqa: BLE001 - split the batch so one bad row fails alone
            if len(requests) == 1:
                return [exc]
            log.warning("generate on %d rows failed (%s); retrying one by one", len(requests), exc)
            return [self._generate_isolated([r])[0] for r in requests]

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        import torch

        cfg, processor = self.config, self.processor
        texts, images = [], []
        for req in requests:
            messages, row_images = split_images(req.messages, cfg["min_pixels"], cfg["max_pixels"])
            texts.append(render_prompt(processor, messages))
            images.extend(row_images)
        bounds = {"shortest_edge": cfg["min_pixels"], "longest_edge": cfg["max_pixels"]}
        inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt", size=bounds)
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        first = requests[0]
        temperature = float(first.temperature or 0.0)
        tokenizer = processor.tokenizer
        gen: dict[str, Any] = {"max_new_tokens": int(first.max_tokens or 512), "do_sample": temperature > 0,
                               "return_dict_in_generate": True, "output_logits": bool(first.logprobs),
                               "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                               else tokenizer.eos_token_id}
        if temperature > 0:
            gen.update(temperature=temperature, top_p=float(cfg.get("top_p") or 1.0))
        with torch.inference_mode():
            result = self.model.generate(**inputs, **gen)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = result.sequences[:, prompt_len:].tolist()
        stop = _stop_ids(self.model, tokenizer)
        answers = []
        for row, ids in enumerate(new_tokens):
            length = next((j + 1 for j, t in enumerate(ids) if t in stop), len(ids))
            text = tokenizer.decode(ids[:length], skip_special_tokens=True)
            logprobs = None
            if first.logprobs and result.logits is not None:
                logprobs = self._top_logprobs(result.logits, row, length)
            answers.append(ChatResponse(text=text, logprobs=logprobs,
                                        params={"engine": "transformers", "tokens": length}))
        return answers

    def _top_logprobs(self, logits: Any, row: int, length: int) -> list[dict[str, float]]:
        import torch

        k = int(self.config.get("top_logprobs") or 20)
        tokenizer = self.processor.tokenizer
        out = []
        for step in logits[:length]:
            logp = torch.log_softmax(step[row].float(), dim=-1)
            values, ids = torch.topk(logp, min(k, logp.shape[-1]))
            top: dict[str, float] = {}
            for value, tid in zip(values.tolist(), ids.tolist(), strict=True):
                token = tokenizer.decode([tid])
                top[token] = max(top.get(token, float("-inf")), value)
            out.append(top)
        return out


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(source, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return ids
