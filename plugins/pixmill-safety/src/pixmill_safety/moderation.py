"""``openai-moderation``: text moderation through an OpenAI-compatible ``/moderations`` endpoint.

Runs through the core's HTTP engine (bounded concurrency, rpm, retries with backoff on 429/5xx
honouring ``Retry-After``), like every other HTTP serving.
"""

from __future__ import annotations

from typing import Any

from pixmill.http import OpenAICompatibleServing, http_options
from pixmill.options import Option
from pixmill.serving import MODERATION, ModerationOrError, ModerationResult


class OpenAIModerationServing(OpenAICompatibleServing):
    """OpenAI's moderation model (``omni-moderation-latest``) or any endpoint that speaks
    ``POST /v1/moderations``. Texts are sent ``--texts-per-request`` at a time (the API takes a
    list); each comes back flagged or not, with per-category flags and scores."""

    name = "openai-moderation"
    description = "text moderation via an OpenAI-compatible /moderations endpoint"
    capabilities = frozenset({MODERATION})
    options = (
        *http_options(model="omni-moderation-latest", concurrency=4),
        Option("texts_per_request", int, 32, "texts sent in one request", cache=False),
    )

    def moderate(self, texts: list[str]) -> list[ModerationOrError]:
        size = max(1, int(self.config["texts_per_request"] or 1))
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
        model = self.config["model"]

        def factory(chunk: list[str]) -> Any:
            return lambda: self.client.moderations.create(model=model, input=chunk)

        answers = self.run_requests([factory(c) for c in chunks])
        out: list[ModerationOrError] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            if isinstance(answer, Exception):
                out.extend([answer] * len(chunk))
                continue
            results = answer.model_dump(by_alias=True).get("results") or []
            if len(results) != len(chunk):
                error = ValueError(f"the moderation endpoint answered {len(results)} results for {len(chunk)} texts")
                out.extend([error] * len(chunk))
                continue
            out.extend(_result(r, model) for r in results)
        return out


def _result(data: dict, model: str) -> ModerationResult:
    categories = data.get("categories") or {}
    scores = data.get("category_scores") or {}
    return ModerationResult(flagged=bool(data.get("flagged")),
                            categories=sorted(c for c, hit in categories.items() if hit),
                            scores={c: round(float(v), 6) for c, v in scores.items() if v is not None},
                            params={"model": model})
