"""Model-free operators: template, filter, head, dedupe."""

from __future__ import annotations

import json
import operator
import string
from typing import Any

from ..context import StepContext
from ..errors import ConfigError
from ..expr import compile_expr
from ..operator import Failed, Operator, Outcome
from ..options import Option
from ..rows import get_field, prompt_text, set_field


class _RowView(dict):
    """Format-string view of a row: ``{scores.overall}`` reads nested fields, and a
    ``conversations`` list formats as its prompt text."""

    def __init__(self, row: dict):
        super().__init__(row)
        self.row = row

    def __missing__(self, key: str) -> Any:
        value = get_field(self.row, key, _MissingField)
        if value is _MissingField:
            raise KeyError(key)
        return value


class _MissingField:
    pass


class _Formatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:  # noqa: D102
        value = kwargs[field_name] if field_name in kwargs else kwargs.__missing__(field_name)
        return value, field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            value = prompt_text(value)  # a conversations list formats as its user text
        elif isinstance(value, (dict, list)) and not format_spec:
            value = json.dumps(value, ensure_ascii=False)
        return super().format_field(value, format_spec)


class Template(Operator):
    """Build a text field from a format string over row fields.

    ``{prompt}`` inserts a field, ``{scores.overall}`` a nested one, ``{conversations}`` the user
    text of a DataFlow-MM conversation. A row missing a field fails with a reason, unless
    ``--missing`` says to leave it empty.
    """

    name = "template"
    description = "build a text field from a format string over row fields"
    options = (
        Option("template", str, None, 'format string, e.g. "a photo of {prompt}, {style}"', required=True),
        Option("output_key", str, "prompt", "field to write"),
        Option("missing", str, "fail", "a row without a field: fail it, or format it as empty",
               choices=("fail", "empty")),
    )
    default_batch_size = 10000

    def __init__(self, serving=None, **options: Any):
        super().__init__(serving, **options)
        self._fmt = _Formatter()
        try:
            parsed = list(self._fmt.parse(self.config["template"]))
        except ValueError as exc:
            raise ConfigError(f"template {self.config['template']!r}: {exc}",
                              "balance the { } braces; write {{ for a literal {") from None
        # Fast path: a template of plain field names without format specs is exactly str.format_map
        # (C speed) whenever those fields hold strings or numbers; anything else (a conversations
        # list, a missing field, a nested name) goes through string.Formatter.
        names = [f for _, f, _, _ in parsed if f is not None]
        simple = all(f.isidentifier() and not spec and not conv for _, f, spec, conv in parsed if f is not None)
        self._getter = operator.itemgetter(*names) if simple and names else None
        self._single = len(names) == 1

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        template, out_key, empty = self.config["template"], self.config["output_key"], self.config["missing"] == "empty"
        fmt, getter, single, nested = self._fmt, self._getter, self._single, "." in out_key
        outcomes: list[Outcome] = []
        for row in rows:
            text = None
            if getter is not None:
                try:
                    values = getter(row)
                    if (type(values) in _PLAIN) if single else _PLAIN.issuperset(map(type, values)):
                        text = template.format_map(row)
                except KeyError:
                    pass
            if text is None:
                try:
                    text = fmt.vformat(template, (), _RowView(row))
                except KeyError as exc:
                    if not empty:
                        outcomes.append(Failed(f"template: row has no field {exc.args[0]!r}"))
                        continue
                    text = fmt.vformat(template, (), _EmptyView(row))
            # Rows are fresh copies read for this batch, so writing into them is safe and saves a copy.
            if nested:
                set_field(row, out_key, text)
            else:
                row[out_key] = text
            outcomes.append(row)
        return outcomes


_PLAIN = frozenset((str, int, float))


class _EmptyView(_RowView):
    def __missing__(self, key: str) -> Any:
        value = get_field(self.row, key, None)
        return "" if value is None else value


class Filter(Operator):
    """Keep the rows for which ``--where EXPR`` is true (see pixmill.expr for the language)."""

    name = "filter"
    description = "keep rows matching a safe expression, e.g. \"scores.overall >= 7\""
    options = (Option("where", str, None, 'expression over row fields, e.g. "scores.overall >= 7 and width >= 512"', required=True),)
    default_batch_size = 10000

    def __init__(self, serving=None, **options: Any):
        super().__init__(serving, **options)
        self._pred = compile_expr(self.config["where"])

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        pred = self._pred
        return [row if pred(row) else None for row in rows]


class Head(Operator):
    """Keep the first ``--n`` rows (in input order)."""

    name = "head"
    description = "keep the first N rows"
    options = (Option("n", int, None, "how many rows to keep", required=True),)
    stateful = True
    default_batch_size = 10000

    def start(self, ctx: StepContext) -> None:
        self._left = max(0, self.config["n"] - ctx.committed_count)

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        keep = min(self._left, len(rows))
        self._left -= keep
        return rows[:keep] + [None] * (len(rows) - keep)


class Dedupe(Operator):
    """Drop rows whose ``--key`` value was already seen (the first occurrence is kept)."""

    name = "dedupe"
    description = "drop rows whose key field repeats an earlier row's"
    options = (
        Option("key", str, None, "field (dotted path) whose value must be unique", required=True),
        Option("ignore_case", bool, False, "compare text case-insensitively and ignoring surrounding spaces"),
    )
    stateful = True
    default_batch_size = 10000

    def _norm(self, row: dict) -> Any:
        value = get_field(row, self.config["key"])
        if isinstance(value, str) and self.config["ignore_case"]:
            return " ".join(value.lower().split())
        if isinstance(value, (list, dict)):
            return json.dumps(value, sort_keys=True)
        return value

    def start(self, ctx: StepContext) -> None:
        self._seen = {self._norm(r) for r in ctx.committed_rows()} if ctx.committed_rows else set()

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        out: list[Outcome] = []
        for row in rows:
            key = self._norm(row)
            if key is None:
                out.append(Failed(f"dedupe: row has no field {self.config['key']!r}"))
            elif key in self._seen:
                out.append(None)
            else:
                self._seen.add(key)
                out.append(row)
        return out


BASIC_OPERATORS: list[type[Operator]] = [Template, Filter, Head, Dedupe]

