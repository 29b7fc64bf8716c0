"""pixmill-testing: the test harness for pixmill plugin authors (a test dependency, never a runtime one).

- :mod:`pixmill_testing.pytest_plugin`: pytest fixtures (loaded through the ``pytest11`` entry point);
- :mod:`pixmill_testing.openai_server`: a fake OpenAI-compatible server on 127.0.0.1;
- :func:`write_jsonl`, :func:`read_jsonl`, :func:`png`, :func:`step_rows`, :func:`step_failures`,
  :class:`RunResult` (:mod:`pixmill_testing.runs`): input files, images and a run's rows and failures;
- :class:`StoreContract`: the contract every :class:`pixmill.Store` must pass;
- :class:`LineStoreContract`: extra checks for line-oriented stores (malformed lines, ``on_bad_line``).
- :func:`assert_rows_equal`, :func:`assert_plain`: row comparisons that also compare Python types.

See :mod:`pixmill_testing.store_contract` for usage.
"""

from __future__ import annotations

from typing import Any

from .runs import RunResult, png, read_jsonl, step_failures, step_rows, write_jsonl

_CONTRACT = ("LineStoreContract", "StoreContract", "assert_plain", "assert_rows_equal")
__all__ = [*_CONTRACT, "RunResult", "png", "read_jsonl", "step_failures", "step_rows", "write_jsonl"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the contract imports pytest, which benchmarks and demos that only start
    # the fake OpenAI server need not pay for.
    if name in _CONTRACT:
        from . import store_contract

        return getattr(store_contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
