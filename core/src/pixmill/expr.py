"""A safe expression language for ``filter --where``.

Python syntax, parsed with :mod:`ast` and compiled to closures over a whitelist of node types:
comparisons (``==  !=  <  <=  >  >=  in  not in``), ``and or not``, arithmetic, literals, lists,
dotted field access (``scores.overall``, ``images.0``), and a few functions (``len``, ``lower``,
``upper``, ``contains``, ``startswith``, ``endswith``, ``exists``). Nothing is ever passed to
``eval``. A missing field is ``None``; comparing ``None`` with ``<``/``>`` is false, not an error.
"""

from __future__ import annotations

import ast
import io
import operator as _op
import tokenize
from typing import Any, Callable

from .errors import ConfigError
from .rows import get_field

Predicate = Callable[[dict], Any]

_CMP = {
    ast.Eq: _op.eq, ast.NotEq: _op.ne, ast.Lt: _op.lt, ast.LtE: _op.le, ast.Gt: _op.gt, ast.GtE: _op.ge,
    ast.In: lambda a, b: b is not None and a in b, ast.NotIn: lambda a, b: b is None or a not in b,
    ast.Is: _op.is_, ast.IsNot: _op.is_not,
}
_BIN = {ast.Add: _op.add, ast.Sub: _op.sub, ast.Mult: lambda a, b: _bounded_mul(a, b), ast.Div: _op.truediv,
        ast.Mod: lambda a, b: _no_formatting_mod(a, b), ast.FloorDiv: _op.floordiv}
_FUNCS: dict[str, Callable[..., Any]] = {
    "len": lambda v: len(v) if v is not None else 0,
    "lower": lambda v: str(v).lower() if v is not None else None,
    "upper": lambda v: str(v).upper() if v is not None else None,
    "contains": lambda v, s: v is not None and s in v,
    "startswith": lambda v, s: isinstance(v, str) and v.startswith(s),
    "endswith": lambda v, s: isinstance(v, str) and v.endswith(s),
    "exists": lambda v: v is not None,
    "float": lambda v: float(v) if v is not None else None,
    "int": lambda v: int(v) if v is not None else None,
}
_CONSTS = {"true": True, "false": False, "null": None, "none": None, "True": True, "False": False, "None": None}


def _index_dots(source: str) -> str:
    """Rewrite ``images.0`` (not Python: ``.0`` lexes as a float) to ``images[0]``, outside strings."""
    text = " ".join(source.split())
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text  # ast.parse reports the error
    edits = []
    for prev, tok in zip(tokens, tokens[1:], strict=False):
        is_index = tok.type == tokenize.NUMBER and tok.string.startswith(".") and tok.string[1:].isdigit()
        after_field = prev.type == tokenize.NAME or prev.string in (")", "]") or (
            prev.type == tokenize.NUMBER and prev.string.startswith("."))
        if is_index and after_field and tok.start == prev.end:
            edits.append((tok.start[1], tok.end[1], f"[{tok.string[1:]}]"))
    for start, end, new in reversed(edits):
        text = text[:start] + new + text[end:]
    return text


MAX_SOURCE_CHARS = 10_000
MAX_DEPTH = 50  # nesting of operators and calls; real filters use a handful
MAX_VALUE_LEN = 1_000_000  # characters or items a `*` may build (per row)


def compile_expr(source: str) -> Predicate:
    """Compile an expression to a function of a row. Raises ConfigError naming the problem."""
    if len(source) > MAX_SOURCE_CHARS:
        raise ConfigError(f"filter expression is {len(source):,} characters long (limit {MAX_SOURCE_CHARS:,})",
                          "write a shorter expression, or compute the value in an earlier step")
    try:
        tree = ast.parse(_index_dots(source), mode="eval")
        depth = _depth(tree.body)
        if depth > MAX_DEPTH:
            raise _Unsupported(f"nesting is {depth} levels deep (limit {MAX_DEPTH})")
        return _compile(tree.body)
    except (RecursionError, MemoryError):
        raise ConfigError(f"filter expression {_shown(source)} is nested too deeply to parse",
                          f"keep nesting under {MAX_DEPTH} levels") from None
    except SyntaxError as exc:
        raise ConfigError(f"filter expression {_shown(source)} does not parse: {exc.msg} at column {exc.offset}",
                          'write e.g. "scores.overall >= 7 and width >= 512"') from None
    except _Unsupported as exc:
        raise ConfigError(f"filter expression {_shown(source)}: {exc}",
                          "use comparisons, and/or/not, field names and " + ", ".join(_FUNCS)) from None


def _shown(source: str) -> str:
    return repr(source) if len(source) <= 200 else repr(source[:200]) + "..."


class _Unsupported(Exception):
    pass


def _depth(node: ast.AST) -> int:
    """How deeply ``node`` nests (iterative: a hostile expression must not blow the stack here)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if level <= MAX_DEPTH + 1:
            stack.extend((child, level + 1) for child in ast.iter_child_nodes(current))
    return deepest


def _seq_len(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _bounded_mul(a: Any, b: Any) -> Any:
    """``a * b``, refusing a string or list longer than MAX_VALUE_LEN (``'a' * 4000000000``)."""
    for seq, n in ((a, b), (b, a)):
        size = _seq_len(seq)
        if size is not None and isinstance(n, int) and size * n > MAX_VALUE_LEN:
            raise _TooLarge(f"{size:,} x {n:,} items")
    return _op.mul(a, b)


def _no_formatting_mod(a: Any, b: Any) -> Any:
    """``a % b`` for numbers only: ``'%0999999999d' % 1`` would build gigabytes per row."""
    if isinstance(a, (str, bytes)):
        raise TypeError("string formatting is not allowed")
    return _op.mod(a, b)


class _TooLarge(TypeError):
    """A value over MAX_VALUE_LEN: the row's result is None, like any other type mismatch."""


def _safe_cmp(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def cmp(a: Any, b: Any) -> Any:
        try:
            return fn(a, b)
        except TypeError:  # None < 3, "a" < 3: a row without a comparable value does not match
            return False
    return cmp


def _value_vs_constant(op: type, value_of: Predicate, value: Any) -> Predicate:
    """``len(prompt) < 200`` and the like as one closure: the constant side is not a call per row."""
    cmp = _CMP[op]

    def compare(row: dict) -> Any:
        computed = value_of(row)  # its own errors are the row's, as in the general case
        try:
            return cmp(computed, value)
        except TypeError:
            return False
    return compare


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) and b(row)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) or b(row)


def _field_vs_constant(op: type, field: str, value: Any) -> Predicate:
    """The most common filter, ``width >= 512``, as one closure (no nested calls per row)."""
    cmp = _CMP[op]

    def compare(row: dict) -> Any:
        try:
            return cmp(row.get(field), value)
        except TypeError:
            return False
    return compare


def _field_path(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _field_path(node.value)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base = _field_path(node.value)
        return f"{base}.{node.slice.value}" if base else None
    return None


def _compile(node: ast.AST) -> Predicate:  # noqa: C901 - one branch per node type
    if isinstance(node, ast.Constant):
        value = node.value
        return lambda row: value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        value = _CONSTS[node.id]
        return lambda row: value
    path = _field_path(node)
    if path is not None:
        if "__" in path:  # fields are dict keys, never attributes; refuse dunder names outright
            raise _Unsupported(f"field {path!r} is not allowed")
        if "." not in path:
            return lambda row: row.get(path)
        return lambda row: get_field(row, path)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_compile(e) for e in node.elts]
        return lambda row: [f(row) for f in items]
    if isinstance(node, ast.BoolOp):
        # Chained closures, not all()/any() over a generator: filters run once per row.
        parts = [_compile(v) for v in node.values]
        combined = parts[0]
        for part in parts[1:]:
            combined = _and(combined, part) if isinstance(node.op, ast.And) else _or(combined, part)
        return combined
    if isinstance(node, ast.UnaryOp):
        inner = _compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda row: not inner(row)
        if isinstance(node.op, ast.USub):
            return lambda row: -inner(row)
        raise _Unsupported(f"operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.Compare):
        left = _compile(node.left)
        ops = []
        for op, comp in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _CMP:
                raise _Unsupported(f"comparison {type(op).__name__} is not allowed")
            ops.append((_safe_cmp(_CMP[type(op)]), _compile(comp)))
        if len(ops) == 1:
            (fn, right), = ops
            field = node.left.id if isinstance(node.left, ast.Name) and node.left.id not in _CONSTS else None
            if isinstance(node.comparators[0], ast.Constant):
                if field is not None:
                    return _field_vs_constant(type(node.ops[0]), field, node.comparators[0].value)
                return _value_vs_constant(type(node.ops[0]), left, node.comparators[0].value)
            return lambda row: fn(left(row), right(row))

        def chain(row: dict) -> bool:
            a = left(row)
            for fn, right in ops:
                b = right(row)
                if not fn(a, b):
                    return False
                a = b
            return True
        return chain
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BIN:
            raise _Unsupported(f"operator {type(node.op).__name__} is not allowed")
        fn, lhs, rhs = _BIN[type(node.op)], _compile(node.left), _compile(node.right)
        if isinstance(node.left, ast.Constant) and isinstance(node.right, ast.Constant):
            try:  # constants: refuse a value that would be too large now, not once per row
                fn(node.left.value, node.right.value)
            except _TooLarge as exc:
                raise _Unsupported(f"{ast.unparse(node)!r} builds a value of {exc} "
                                   f"(limit {MAX_VALUE_LEN:,})") from None
            except (TypeError, ZeroDivisionError, ValueError):
                pass
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            raise _Unsupported("string formatting with % is not allowed")

        def binop(row: dict) -> Any:
            try:
                return fn(lhs(row), rhs(row))
            except (TypeError, ZeroDivisionError):
                return None
        return binop
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        fn = _FUNCS[node.func.id]
        args = [_compile(a) for a in node.args]
        if len(args) == 1:  # len(prompt), lower(caption): no argument generator per row
            arg, = args
            return lambda row: fn(arg(row))
        return lambda row: fn(*(a(row) for a in args))
    if isinstance(node, ast.Call):
        raise _Unsupported(f"function {ast.unparse(node.func)!r} is not allowed")
    raise _Unsupported(f"{ast.unparse(node)!r} is not allowed")
