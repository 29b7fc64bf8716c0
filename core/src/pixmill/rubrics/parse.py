"""Reading a judge's answer: find the JSON object in what a model wrote, and turn it into scores.

Real models wrap JSON in code fences, add prose before or after it, nest scores under ``"scores"``,
write ``"8/10"`` or ``"Prompt Alignment"``, or stop mid-object when ``max_tokens`` runs out. This
module accepts the first kinds and reports the last clearly. Scores must lie in 0-10 (a score given
on another scale, such as ``"85/100"``, is converted); a bare number outside 0-10 is rejected,
because it means the model misread the scale and clamping would hide that.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from . import Rubric

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:(?:/|out of)\s*(\d+(?:\.\d+)?))?")
_OVERALL_KEYS = ("overall", "overall_score", "overall_rating", "final_score", "score", "total")
_RATIONALE_KEYS = ("rationale", "reasoning", "reason", "explanation", "justification", "comment", "comments")
_NESTED_KEYS = ("scores", "ratings", "criteria", "sub_scores", "subscores")


class JudgmentError(ValueError):
    """The model's answer holds no usable judgment; the message says why."""


def find_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``: inside code fences first, then anywhere in the text.

    Tolerates trailing commas and Python-style literals (single quotes, True/False/None).
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    saw_open = False
    for chunk in candidates:
        for blob in _balanced_objects(chunk):
            saw_open = True
            obj = _loads(blob)
            if isinstance(obj, dict):
                return obj
        saw_open = saw_open or "{" in chunk
    if saw_open:
        raise JudgmentError("no complete JSON object (the answer may have been cut off: raise --max-tokens)")
    raise JudgmentError("no JSON object in the answer")


def _balanced_objects(text: str):
    """Yield every top-level ``{...}`` span, respecting strings and escapes."""
    depth, start, in_str, quote, escaped = 0, -1, False, "", False
    for i, ch in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_str = False
            continue
        if ch in "\"'" and depth > 0:
            # A single quote inside an object is usually an apostrophe in prose-like JSON keys/values
            # written with double quotes; only treat it as a string delimiter when it opens a token.
            if ch == '"' or text[i - 1] in "{[,: \n\t":
                in_str, quote = True, ch
            continue
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                yield text[start : i + 1]


def _loads(blob: str) -> Any:
    for attempt in (blob, _TRAILING_COMMA.sub(r"\1", blob)):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    try:  # Python-style dicts: {'score': 8, 'ok': True}
        return ast.literal_eval(_TRAILING_COMMA.sub(r"\1", blob).replace("true", "True")
                                .replace("false", "False").replace("null", "None"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _norm(key: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(key).lower()).strip("_")


def _flatten(obj: dict[str, Any]) -> dict[str, Any]:
    """Normalised keys, with nested ``{"scores": {...}}`` blocks lifted to the top level."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        nkey = _norm(key)
        if nkey in _NESTED_KEYS and isinstance(value, dict):
            for k, v in value.items():
                flat.setdefault(_norm(k), v)
        else:
            flat.setdefault(nkey, value)
    return flat


def coerce_score(value: Any, name: str) -> float:
    """A 0-10 float from a number, ``"8"``, ``"8/10"``, ``"85/100"`` or ``{"score": 8}``."""
    if isinstance(value, dict):
        inner = _flatten(value)
        for key in ("score", "value", "rating"):
            if key in inner:
                return coerce_score(inner[key], name)
        raise JudgmentError(f"score {name!r} is an object without a score: {json.dumps(value)[:80]}")
    if isinstance(value, bool) or value is None:
        raise JudgmentError(f"score {name!r} is {json.dumps(value)}, not a number")
    scale = 10.0
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _NUMBER.match(str(value))
        if not match:
            raise JudgmentError(f"score {name!r} is {str(value)[:40]!r}, not a number")
        number = float(match.group(1))
        if match.group(2):
            scale = float(match.group(2))
            if scale <= 0:
                raise JudgmentError(f"score {name!r} is {value!r}: a scale of 0")
            number = number / scale * 10.0
    if math.isnan(number) or not 0.0 <= number <= 10.0:
        raise JudgmentError(f"score {name!r} is {value!r}, outside 0-10")
    return number


def _pick(flat: dict[str, Any], name: str) -> Any:
    for key in (name, f"{name}_score", name.replace("_", "")):
        if key in flat:
            return flat[key]
    return _MISSING


_MISSING = object()


def parse_judgment(text: str, rubric: Rubric) -> dict[str, Any]:
    """``{"overall", <sub-scores>..., "rationale"}`` from a judge's answer, or :class:`JudgmentError`.

    Every sub-score the rubric declares must be present. ``overall`` is the model's own when given,
    else the mean of the sub-scores.
    """
    flat = _flatten(find_json_object(text))
    subs: dict[str, float] = {}
    for name in rubric.scores:
        value = _pick(flat, name)
        if value is _MISSING:
            raise JudgmentError(f"the answer has no score {name!r} (keys: {', '.join(flat) or 'none'})")
        subs[name] = coerce_score(value, name)
    overall_raw = next((flat[k] for k in _OVERALL_KEYS if k in flat), _MISSING)
    if overall_raw is _MISSING:
        overall = round(sum(subs.values()) / len(subs), 2)
    else:
        overall = coerce_score(overall_raw, "overall")
    rationale = next((flat[k] for k in _RATIONALE_KEYS if k in flat), "")
    if not isinstance(rationale, str):
        rationale = json.dumps(rationale, ensure_ascii=False)
    return {"overall": overall, **subs, "rationale": rationale.strip()}
