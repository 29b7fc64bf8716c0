"""Test helpers for pixmill plugin authors.

- :class:`StoreContract`: the contract every :class:`pixmill.Store` must pass (needs pytest).
- :class:`LineStoreContract`: extra checks for line-oriented stores (malformed lines, ``on_bad_line``).
- :func:`assert_rows_equal`, :func:`assert_plain`: row comparisons that also compare Python types.

See :mod:`pixmill.testing.store_contract` for usage.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LineStoreContract", "StoreContract", "assert_plain", "assert_rows_equal"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the contract needs pytest, and other helpers in this package (the fake
    # OpenAI server) are used by benchmarks and demos where pytest may not be installed.
    if name in __all__:
        from . import store_contract

        return getattr(store_contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
