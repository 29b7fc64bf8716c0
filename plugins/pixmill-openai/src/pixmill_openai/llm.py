"""``openai-llm``: a text (or vision) chat model for writing prompts, instructions and judgments."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pixmill.http import OpenAICompatibleServing, http_options
from pixmill.http.chat import chat_body, post_chat
from pixmill.http.urls import redact_url
from pixmill.options import Option
from pixmill.serving import TEXT_LLM, VISION_CHAT, ChatOrError, ChatRequest


class OpenAILLMServing(OpenAICompatibleServing):
    """Chat completions with a text answer: the ``text-llm`` capability that ``generate-prompts``
    uses, and ``vision-chat`` for models that read images (each image its own ``image_url`` part).

    ``ChatRequest(json=True)`` is sent with ``response_format={"type": "json_object"}`` unless
    ``--json-mode prompt`` (for endpoints that reject it; the operator's prompt asks for JSON anyway).
    """

    name = "openai-llm"
    description = "text/vision chat models on any OpenAI-compatible endpoint (prompt writing, JSON output)"
    capabilities = frozenset({TEXT_LLM, VISION_CHAT})
    options = (
        *http_options(model="gpt-4o-mini"),
        Option("temperature", float, None, "default sampling temperature (an operator's own value wins)"),
        Option("max_tokens", int, None, "default answer length limit (an operator's own value wins)"),
        Option("json_mode", str, "json_object", "how JSON answers are requested: response_format "
               "json_object, or by the prompt alone", choices=("json_object", "prompt")),
        Option("system_prompt", str, None, "a system message put before requests that have none"),
        Option("extra_body", dict, None, "extra JSON fields sent as they are (a provider's own parameters)"),
    )

    def chat(self, requests: list[ChatRequest]) -> list[ChatOrError]:
        return self.run_requests([self._factory(self._prepare(r)) for r in requests])

    def _prepare(self, request: ChatRequest) -> ChatRequest:
        cfg = self.config
        messages = request.messages
        if cfg.get("system_prompt") and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": cfg["system_prompt"]}, *messages]
        return replace(request, messages=messages,
                       temperature=request.temperature if request.temperature is not None else cfg.get("temperature"),
                       max_tokens=request.max_tokens if request.max_tokens is not None else cfg.get("max_tokens"))

    def _factory(self, request: ChatRequest) -> Any:
        provenance = {"serving": self.name, "endpoint": redact_url(self.config["base_url"])}
        # The body (images included) is built here, in the batch's thread, not on the event loop.
        body = chat_body(self.config["model"], request, self.config["json_mode"], uploader=self.uploads,
                         extra_body=self.config.get("extra_body"))
        return lambda: post_chat(self.client, self.config["model"], body, provenance)
