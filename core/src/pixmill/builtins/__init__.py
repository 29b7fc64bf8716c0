"""The core's own plugin: JSONL store, local executor and the generic operators.

Registered through the core's entry point like any third-party plugin, so every run exercises the
plugin mechanism.
"""

from __future__ import annotations

from ..hookspecs import hookimpl


@hookimpl
def register_stores(register):
    from .jsonl_store import JsonlStore

    register(JsonlStore)


@hookimpl
def register_executors(register):
    from .local_executor import LocalExecutor

    register(LocalExecutor)


@hookimpl
def register_operators(register):
    from ..ops import OPERATORS

    for cls in OPERATORS:
        register(cls)
