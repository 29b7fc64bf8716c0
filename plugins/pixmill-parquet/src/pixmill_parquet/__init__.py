"""pixmill-parquet: registers the ``parquet`` store (``.parquet`` part files, input and export).

Importing this module imports no pyarrow: the store imports it inside its methods, so that
``pixmill --help`` stays fast with the plugin installed.
"""

from __future__ import annotations

from typing import Callable

from pixmill.hookspecs import hookimpl

__all__ = ["register_stores"]


@hookimpl
def register_stores(register: Callable[[type], None]) -> None:
    """Register :class:`pixmill_parquet.store.ParquetStore`."""
    from .store import ParquetStore

    register(ParquetStore)
