"""Splitting one batch-wide model call's results back into rows.

Operators that call a model once per batch plan each row first (a :class:`Failed` for a row whose
input is bad, else how many requests it made), send every request in one list, and take the
answers back row by row: :func:`per_row` does that walk once for all of them.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..operator import Failed


def per_row(rows: list[dict], plans: list[Any], results: list[Any],
            count: Any = lambda plan: plan[0]) -> Iterator[tuple[dict, Any, list[Any], Exception | None]]:
    """Yield ``(row, plan, its results, its first error)`` per row, in order.

    A row planned as :class:`Failed` made no request: it gets no results and no error (the caller
    passes the plan on). ``count(plan)`` says how many consecutive results belong to a row.
    """
    cursor = 0
    for row, plan in zip(rows, plans, strict=True):
        if isinstance(plan, Failed):
            yield row, plan, [], None
            continue
        n = count(plan)
        mine = results[cursor:cursor + n]
        cursor += n
        yield row, plan, mine, next((r for r in mine if isinstance(r, Exception)), None)
