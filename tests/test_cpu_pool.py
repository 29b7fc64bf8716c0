"""The shared CPU process pool: results in order, errors returned as values that survive the trip."""

from __future__ import annotations

import os

from pixmill.cpu_pool import cores, error_value, map_in_pool


class _TwoArgError(Exception):
    def __init__(self, message: str, code: int):  # unpickles without its second argument: breaks
        super().__init__(message)
        self.code = code


def _work(n: int) -> tuple[int, int] | Exception:
    try:
        if n % 5 == 3:
            raise _TwoArgError(f"bad {n}", n)
        if n % 5 == 4:
            raise FileNotFoundError(2, "no such file", f"f{n}")
        return n * n, os.getpid()
    except Exception as exc:  # noqa: BLE001 - the pool's contract: errors come back as values
        return error_value(exc)


def test_results_come_back_in_order_from_other_processes_with_errors_as_values():
    done = map_in_pool(_work, range(40), chunksize=3)
    if cores() < 2:
        assert done is None  # one core: the caller works alone
        return
    assert done is not None and len(done) == 40
    assert [d[0] for i, d in enumerate(done) if i % 5 < 3] == [i * i for i in range(40) if i % 5 < 3]
    assert all(d[1] != os.getpid() for i, d in enumerate(done) if i % 5 < 3)  # not computed here
    assert all(isinstance(done[i], RuntimeError) and f"_TwoArgError: bad {i}" in str(done[i]) for i in range(3, 40, 5))
    assert all(isinstance(done[i], FileNotFoundError) and done[i].filename == f"f{i}" for i in range(4, 40, 5))
