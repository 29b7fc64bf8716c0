"""The in-process engines of ``qwen-vl`` (the ``openai`` engine lives in the serving itself, on top of
:class:`pixmill.http.OpenAICompatibleServing`). Each has ``load()``, ``unload()`` and
``chat(requests) -> list[ChatResponse | Exception]``; heavy imports happen inside ``load()``."""
