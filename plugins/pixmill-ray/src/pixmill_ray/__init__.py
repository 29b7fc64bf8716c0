"""pixmill-ray: registers the ``ray`` executor (model steps on Ray actors, one replica per GPU share).

Importing this module imports no ray: the executor imports it inside its methods, so that
``pixmill --help`` stays fast with the plugin installed.
"""

from __future__ import annotations

from typing import Callable

from pixmill.hookspecs import hookimpl

__all__ = ["register_executors"]


@hookimpl
def register_executors(register: Callable[[type], None]) -> None:
    """Register :class:`pixmill_ray.executor.RayExecutor`."""
    from .executor import RayExecutor

    register(RayExecutor)
