"""pixmill-openai: servings for any OpenAI-compatible endpoint (OpenAI, Gemini's OpenAI layer,
OpenRouter, LiteLLM, vLLM, a company proxy).

- ``openai-images``: the Images API (generations and edits: gpt-image-1, DALL-E 2/3, compatible models);
- ``openai-chat``: chat completions that answer with images (Gemini 2.5 Flash Image and similar);
- ``openai-llm``: a text (or vision) chat model, e.g. for ``generate-prompts``.

Concurrency, rate limits, retries, timeouts and key lookup come from :mod:`pixmill.http` in the core;
``openai`` is imported only when a serving loads.
"""

from __future__ import annotations

from pixmill.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_servings(register):
    from .chat_images import OpenAIChatImageServing
    from .images import OpenAIImagesServing
    from .llm import OpenAILLMServing

    register(OpenAIImagesServing)
    register(OpenAIChatImageServing)
    register(OpenAILLMServing)
