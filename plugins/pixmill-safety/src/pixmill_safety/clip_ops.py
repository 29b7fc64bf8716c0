"""``clip-score`` (prompt-image agreement) and ``aesthetic-score`` (LAION predictor) over any
serving with the ``image-text-embedding`` capability (``clip``)."""

from __future__ import annotations

from typing import Any

from pixmill.context import StepContext
from pixmill.fields import PROMPT_FIELDS, first_present
from pixmill.image_files import open_row_image
from pixmill.operator import Dropped
from pixmill.ops.per_image import IMAGE_KEY, PerImageOperator
from pixmill.options import Option
from pixmill.rows import ID_KEY, get_field, prompt_text
from pixmill.serving import IMAGE_TEXT_EMBEDDING

from .aesthetic import AestheticHead


class _EmbeddingOperator(PerImageOperator):
    """Loads RGB images for an embedding serving; drops rows under ``--drop-below``."""

    capability = IMAGE_TEXT_EMBEDDING
    default_batch_size = 64

    def load(self, ctx: StepContext, row: dict, path: str, field: str) -> Any:
        return open_row_image(ctx, path, field, row=row)

    def drop_reason(self, row: dict, figure: Any) -> Dropped | None:
        limit = self.config["drop_below"]
        if limit is None:
            return None
        score = min(figure if isinstance(figure, list) else [figure])
        if score >= limit:
            return None
        return Dropped(f"{self.config['output_key']} {score:.2f} < {limit}", {self.config["output_key"]: figure})


class ClipScore(_EmbeddingOperator):
    """How well each image matches its row's prompt: ``100 * max(cos(image, text), 0)`` between
    CLIP embeddings (the CLIPScore of torchmetrics; about 20-35 for real CLIP ViT-L/14 pairs that
    match, under ~15 for unrelated ones). Writes a number per image (a list for several images) to
    ``--output-key`` (default ``clip_score``)."""

    name = "clip-score"
    description = "prompt-image CLIP score, 100 * cosine of CLIP embeddings (clip serving)"
    options = (
        IMAGE_KEY,
        Option("prompt_key", str, None, "field with the prompt (default: prompt, else conversations)"),
        Option("output_key", str, "clip_score", "field to write the score to"),
        Option("drop_below", float, None, "drop rows whose score is below this (recorded in dropped.jsonl)"),
    )

    def fields_read(self) -> list[tuple[str, ...]]:
        key = self.config["prompt_key"]
        return [*super().fields_read(), (key,) if key else PROMPT_FIELDS]

    def _prompt(self, row: dict) -> str:
        key = self.config["prompt_key"] or first_present(row, PROMPT_FIELDS)
        value = get_field(row, key) if key else None
        if value is None:
            raise ValueError(f"row {row.get(ID_KEY)}: no prompt field {key or 'prompt/conversations'!r}; "
                             "pass --prompt-key FIELD")
        return prompt_text(value)

    def measure(self, rows: list[dict], items: list[Any]) -> list[Any]:
        import numpy as np

        prompts: list[Any] = []
        for row in rows:
            try:
                prompts.append(self._prompt(row))
            except ValueError as exc:
                prompts.append(exc)
        texts = sorted({p for p in prompts if isinstance(p, str)})
        images = self.serving.embed_images(items)
        by_text = dict(zip(texts, self.serving.embed_texts(texts), strict=True)) if texts else {}
        out: list[Any] = []
        for emb, prompt in zip(images, prompts, strict=True):
            if isinstance(prompt, Exception):
                out.append(prompt)
            else:
                out.append(round(100.0 * max(float(np.dot(emb, by_text[prompt])), 0.0), 4))
        return out


class AestheticScore(_EmbeddingOperator):
    """The LAION aesthetic predictor: an MLP head (``--head``, its weights file) over CLIP ViT-L/14
    image embeddings, about 1-10 (real photos mostly 4-6.5; > 6 looks good). Writes a number per
    image (a list for several images) to ``--output-key`` (default ``aesthetic``)."""

    name = "aesthetic-score"
    description = "LAION aesthetic predictor (MLP head file over CLIP image embeddings; clip serving)"
    options = (
        IMAGE_KEY,
        Option("head", str, None, "the predictor's weights file (.pth state dict or .safetensors)", required=True),
        Option("output_key", str, "aesthetic", "field to write the score to"),
        Option("drop_below", float, None, "drop rows whose score is below this (recorded in dropped.jsonl)"),
    )

    def __init__(self, serving: Any = None, **options: Any):
        super().__init__(serving, **options)
        self._head = AestheticHead.load(self.config["head"])  # fail before any work on a bad file

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        from pixmill.runner import file_sha256

        ident["head_sha256"] = file_sha256(self._head_path())  # the weights, not the file name, decide
        return ident

    def _head_path(self) -> Any:
        from pathlib import Path

        return Path(self.config["head"]).expanduser()

    def start(self, ctx: StepContext) -> None:
        dim = getattr(self.serving, "embedding_dim", None)
        if dim is not None and dim != self._head.input_dim:  # one clear error, not one per row
            self._head.score([[0.0] * dim])

    def measure(self, rows: list[dict], items: list[Any]) -> list[Any]:
        scores = self._head.score(self.serving.embed_images(items))
        return [round(float(s), 4) for s in scores]
