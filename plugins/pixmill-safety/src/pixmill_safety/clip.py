"""``clip``: image and text embeddings from a CLIP or SigLIP checkpoint through transformers.

Any checkpoint that ``AutoModel`` loads as a model with ``get_image_features`` and
``get_text_features`` works: ``openai/clip-vit-large-patch14`` (what the LAION aesthetic head was
trained on), ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, ``google/siglip-so400m-patch14-384``, or a
local folder. Images and texts are embedded ``--embed-batch`` at a time, on the GPU when there is
one, and returned L2-normalised.
"""

from __future__ import annotations

import logging
from typing import Any

from pixmill.errors import ConfigError
from pixmill.options import Option
from pixmill.serving import IMAGE_TEXT_EMBEDDING, Serving, release_cuda_memory

log = logging.getLogger("pixmill.safety.clip")


class ClipServing(Serving):
    """CLIP / SigLIP embeddings (transformers). ``--model`` is a hub id (from the local cache when
    offline) or a folder saved with ``save_pretrained``."""

    name = "clip"
    description = "CLIP / SigLIP image and text embeddings (transformers), for clip-score and aesthetic-score"
    capabilities = frozenset({IMAGE_TEXT_EMBEDDING})
    options = (
        Option("model", str, "openai/clip-vit-large-patch14", "CLIP or SigLIP checkpoint: hub id or local folder"),
        Option("revision", str, None, "hub revision (branch, tag or commit) for reproducible scores"),
        Option("device", str, "auto", "auto (cuda when present, else cpu), cpu, cuda, cuda:1...", cache=False),
        Option("dtype", str, "auto", "auto (float16 on GPU, float32 on CPU), float32, float16, bfloat16",
               choices=("auto", "float32", "float16", "bfloat16")),
        Option("embed_batch", int, 64, "images or texts per forward pass", cache=False),
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._model: Any = None
        self._tokenizer: Any = None
        self._processor: Any = None
        self._device = "cpu"

    def check(self) -> None:
        from pathlib import Path

        model = str(self.config["model"])
        if model.startswith((".", "/", "~")) and not Path(model).expanduser().is_dir():
            raise ConfigError(f"serving clip: model folder {model} does not exist",
                              "pass a hub id or a folder written by save_pretrained")

    def _pick_device(self) -> str:
        import torch

        device = self.config["device"]
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return device

    def load(self) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        name, revision = self.config["model"], self.config["revision"]
        self._device = self._pick_device()
        dtype = self.config["dtype"]
        if dtype == "auto":
            dtype = "float16" if self._device.startswith("cuda") else "float32"
        try:
            model = AutoModel.from_pretrained(name, revision=revision, dtype=getattr(torch, dtype))
            self._tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
            # The PIL processor: the fast one needs torchvision, which this project never installs.
            try:
                self._processor = AutoImageProcessor.from_pretrained(name, revision=revision, backend="pil")
            except TypeError:  # transformers before the `backend` argument
                self._processor = AutoImageProcessor.from_pretrained(name, revision=revision, use_fast=False)
        except OSError as exc:
            raise ConfigError(f"serving clip: cannot load {name!r} ({str(exc).splitlines()[0]})",
                              "download it first (huggingface-cli download MODEL) or pass a local folder") from None
        if not hasattr(model, "get_image_features"):
            raise ConfigError(f"serving clip: {name!r} is a {type(model).__name__}, not a CLIP/SigLIP model",
                              "pass a CLIP or SigLIP checkpoint")
        self._model = model.to(self._device).eval()
        self._siglip = "siglip" in type(model).__name__.lower()
        log.debug("clip: %s on %s (%s)", name, self._device, dtype)

    def unload(self) -> None:
        self._model = self._tokenizer = self._processor = None
        release_cuda_memory()

    @property
    def embedding_dim(self) -> int:
        if self._model is None:
            self.load()
        config = self._model.config
        return int(getattr(config, "projection_dim", None) or config.vision_config.hidden_size)

    def _features(self, output: Any) -> Any:
        # transformers 5 may return a model output instead of a tensor
        return output if hasattr(output, "norm") else output.pooler_output

    def _batches(self, items: list, fn: Any) -> Any:
        import numpy as np
        import torch

        if self._model is None:
            self.load()
        size = max(1, int(self.config["embed_batch"] or 1))
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(items), size):
                emb = self._features(fn(items[i:i + size])).float()
                emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                chunks.append(emb.cpu().numpy())
        dim = chunks[0].shape[1] if chunks else self.embedding_dim
        return np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)

    def embed_images(self, images: list[Any]) -> Any:
        def run(chunk: list[Any]) -> Any:
            pixels = self._processor(images=chunk, return_tensors="pt")["pixel_values"]
            return self._model.get_image_features(pixel_values=pixels.to(self._device, self._model.dtype))

        return self._batches(images, run)

    def embed_texts(self, texts: list[str]) -> Any:
        def run(chunk: list[str]) -> Any:
            # SigLIP was trained on texts padded to its full length; CLIP pads to the longest.
            enc = self._tokenizer(chunk, padding="max_length" if self._siglip else True, truncation=True,
                                  return_tensors="pt")
            enc = {k: v.to(self._device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            return self._model.get_text_features(**enc)

        return self._batches(texts, run)
