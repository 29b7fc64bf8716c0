"""The hooks a pixmill plugin implements. Full reference with examples: docs/hooks.md.

Each collector hook receives a ``register`` callback (the shape of simonw/llm's ``register_models``):
call it once per class. Register classes, never loaded models, and import heavy libraries (torch,
diffusers, vllm, openai) inside methods, so that ``pixmill --help`` stays fast.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("pixmill")
hookimpl = pluggy.HookimplMarker("pixmill")


@hookspec
def register_servings(register: Callable[[type], None]) -> None:
    """Register model backends: call ``register(cls)`` for each :class:`pixmill.Serving` subclass."""


@hookspec
def register_operators(register: Callable[[type], None]) -> None:
    """Register pipeline steps: call ``register(cls)`` for each :class:`pixmill.Operator` subclass."""


@hookspec
def register_stores(register: Callable[[type], None]) -> None:
    """Register row stores: call ``register(cls)`` for each :class:`pixmill.Store` subclass."""


@hookspec
def register_executors(register: Callable[[type], None]) -> None:
    """Register executors: call ``register(cls)`` for each :class:`pixmill.Executor` subclass."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``pixmill`` CLI: ``cli`` is the top-level :class:`click.Group`."""
