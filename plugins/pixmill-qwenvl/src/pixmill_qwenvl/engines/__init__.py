"""The in-process engines of ``qwen-vl`` (the ``openai`` engine lives in the serving itself, through
the :class:`pixmill.http.HTTPConnection` it composes for that engine). Each has ``load()``, ``unload()`` and
``chat(requests) -> list[ChatResponse | Exception]``; heavy imports happen inside ``load()``."""
