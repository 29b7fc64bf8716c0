"""``generate-prompts``: an LLM writes image descriptions or edit instructions, by category.

Model-agnostic: it asks any ``text-llm`` serving for JSON lists of items, one request per category,
validates and de-duplicates what comes back, re-asks for what is missing, and expands each input row
(a topic, a caption, or the empty seed row of a pipeline with no ``--input``) into one child row per
item, carrying the category and the parent's fields.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context import StepContext
from ..errors import ConfigError
from ..operator import Failed, Operator, Outcome
from ..options import Option
from ..rows import ID_KEY, get_field, prompt_text
from ..serving import TEXT_LLM, ChatRequest

log = logging.getLogger("pixmill.ops.prompts")

KINDS = {
    "description": ("image descriptions (prompts for a text-to-image model)", "image description"),
    "instruction": ("image editing instructions", "editing instruction"),
}

# Built-in categories: (ratio, what the LLM is told the category means).
DEFAULT_CATEGORIES: dict[str, dict[str, tuple[float, str]]] = {
    "instruction": {
        "replace": (0.25, "replace one object in the image with a different object, keeping everything else"),
        "add": (0.2, "add one new object or element to the image in a plausible place"),
        "remove": (0.15, "remove one object from the image and fill the area naturally"),
        "style": (0.15, "change the whole image's artistic style (e.g. watercolor, pixel art, film noir)"),
        "background": (0.15, "replace or change the background while keeping the main subject as it is"),
        "subject-driven": (0.1, "keep the given subject's identity and show it in a new scene, pose or context"),
    },
    "description": {
        "people": (0.2, "people: portraits, activities, professions, everyday moments"),
        "animals": (0.2, "animals in natural or unusual settings"),
        "objects": (0.2, "objects and products, close-ups and still lifes"),
        "scenes": (0.2, "places: landscapes, cityscapes, interiors, at various times and weather"),
        "art": (0.2, "artworks and illustrations in a named style or medium"),
    },
}

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")


@dataclass(frozen=True)
class Category:
    """A category of items: its name, its share of each row's items, and how the LLM is told it."""

    name: str
    ratio: float
    description: str = ""
    examples: tuple[str, ...] = ()


class GeneratePrompts(Operator):
    """Write image descriptions or edit instructions with any text LLM, by category and ratio.

    For each input row it asks for ``--num-prompts`` items split across the categories by their
    ratios (largest remainder), one JSON request per category. Items are validated (JSON shape,
    non-empty, ``--min-chars``..``--max-chars``) and de-duplicated case- and space-insensitively
    within the row and against everything the step already produced (``--dedupe run``); missing
    items are asked for again, up to ``--max-rounds``. Each item becomes a child row (id
    ``parent/i``) with the parent's fields, ``<category_key>`` and ``<output_key>``.

    Categories: ``--categories replace:3,add:2,remove:1`` (name or name:weight), ``--ratios`` as
    JSON, or ``--categories-file cats.yaml`` (``name: ratio`` or ``name: {ratio, description,
    examples}``, optionally under ``categories:`` next to ``kind:`` and ``instructions:``).
    """

    name = "generate-prompts"
    description = "an LLM writes image descriptions or edit instructions by category (expands rows)"
    capability = TEXT_LLM
    default_batch_size = 1
    options = (
        Option("kind", str, "description", "what to write: image descriptions or edit instructions",
               choices=tuple(KINDS)),
        Option("num_prompts", int, 10, "items per input row, split across categories by ratio"),
        Option("categories", list, None, "categories as name or name:weight (default: the kind's built-ins: "
               "replace/add/remove/style/background/subject-driven for instructions)"),
        Option("ratios", dict, None, 'category weights as JSON, e.g. {"replace": 0.5, "add": 0.5}'),
        Option("categories_file", str, None, "YAML file with categories, ratios, descriptions and examples"),
        Option("topic_key", str, "topic", "input field with a topic or caption to write about (optional per row)"),
        Option("output_key", str, "prompt", "field to write each item to"),
        Option("category_key", str, "category", "field to write each item's category to"),
        Option("instructions", str, None, "extra guidance for the LLM (style, language, constraints)"),
        Option("min_chars", int, 10, "shortest valid item"),
        Option("max_chars", int, 500, "longest valid item"),
        Option("max_rounds", int, 3, "requests per category and row before accepting fewer items"),
        Option("dedupe", str, "run", "drop repeats within each row only, or across the whole step",
               choices=("row", "run")),
        Option("temperature", float, 1.0, "sampling temperature (variety)"),
        Option("max_tokens", int, None, "answer length limit per request"),
    )

    def __init__(self, serving: Any = None, **options: Any):
        super().__init__(serving, **options)
        cfg = self.config
        if cfg["num_prompts"] < 1:
            raise ConfigError(f"{self.name}: --num-prompts must be at least 1", "pass --num-prompts 10")
        if not 1 <= cfg["min_chars"] <= cfg["max_chars"]:
            raise ConfigError(f"{self.name}: --min-chars/--max-chars {cfg['min_chars']}..{cfg['max_chars']} is empty",
                              "use 1 <= --min-chars <= --max-chars")
        self.kind, self.extra_instructions, self.categories = self._load_categories()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    # -- categories -----------------------------------------------------------------------------
    def _load_categories(self) -> tuple[str, str | None, list[Category]]:
        cfg = self.config
        kind, instructions = cfg["kind"], cfg["instructions"]
        spec: dict[str, Any] = {}
        if cfg["categories_file"]:
            kind, file_instructions, spec = _read_categories_file(Path(cfg["categories_file"]), kind)
            instructions = instructions or file_instructions
        builtin = DEFAULT_CATEGORIES[kind]
        if cfg["categories"]:
            from_file, spec = spec, {}
            for entry in cfg["categories"]:
                name, sep, weight = str(entry).replace("=", ":").partition(":")
                name = name.strip()
                if not name:
                    raise ConfigError(f"{self.name}: empty category name in --categories",
                                      "write --categories replace:3,add:2,remove:1")
                known = from_file.get(name)
                info = dict(known) if isinstance(known, dict) else {}
                if sep:
                    info["ratio"] = _ratio(weight, name)
                spec[name] = info or None
        if cfg["ratios"]:
            # Ratios name the categories, replacing the built-in ones (with --categories or a
            # categories file, they weight the listed ones; a file's unlisted name is a new one).
            if not isinstance(cfg["ratios"], dict):
                raise ConfigError(f"{self.name}: --ratios must be a JSON object", 'pass --ratios \'{"replace": 0.5}\'')
            unknown = sorted(set(cfg["ratios"]) - set(spec))
            if unknown and cfg["categories"]:  # an explicit list: a name outside it is a typo
                raise ConfigError(f"{self.name}: --ratios names unknown category {unknown[0]!r}",
                                  f"use one of: {', '.join(spec)}, or add it to --categories")
            for name, weight in cfg["ratios"].items():
                info = spec.get(name)
                spec[name] = {**info, "ratio": _ratio(weight, name)} if isinstance(info, dict) else _ratio(weight, name)
        if not spec:
            spec = {name: None for name in builtin}
        categories = []
        for name, value in spec.items():
            info = value if isinstance(value, dict) else {"ratio": value}
            default_ratio, default_desc = builtin.get(name, (1.0, ""))
            ratio = info.get("ratio")
            categories.append(Category(
                name=name, ratio=default_ratio if ratio is None else _ratio(ratio, name),
                description=str(info.get("description") or default_desc),
                examples=tuple(str(e) for e in info.get("examples") or ())))
        if not any(c.ratio > 0 for c in categories):
            raise ConfigError(f"{self.name}: every category has ratio 0", "give at least one category a positive ratio")
        return kind, instructions, categories

    def identity(self) -> dict[str, Any]:
        # The categories as resolved (file content included), so editing the YAML recomputes.
        ident = super().identity()
        ident["categories"] = [[c.name, c.ratio, c.description, list(c.examples)] for c in self.categories]
        ident["resolved_kind"] = self.kind
        ident["resolved_instructions"] = self.extra_instructions
        return ident

    def targets(self, total: int | None = None) -> dict[str, int]:
        """Items per category for one row: ratios applied to ``total`` by largest remainder."""
        total = self.config["num_prompts"] if total is None else total
        weight = sum(c.ratio for c in self.categories)
        exact = [(c.name, total * c.ratio / weight) for c in self.categories]
        counts = {name: int(x) for name, x in exact}
        order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - int(exact[i][1])), i))
        for i in order[: total - sum(counts.values())]:
            counts[exact[i][0]] += 1
        return counts

    # -- running --------------------------------------------------------------------------------
    def start(self, ctx: StepContext) -> None:
        # Resume: what earlier runs of this step committed counts as already produced.
        if self.config["dedupe"] != "run" or ctx.committed_rows is None:
            return
        key = self.config["output_key"]
        with self._lock:
            for row in ctx.committed_rows():
                text = row.get(key)
                if isinstance(text, str):
                    self._seen.add(normalize(text))

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        states = [_RowState(row, self.targets()) for row in rows]
        for round_no in range(self.config["max_rounds"]):
            asks = [(st, cat, st.missing(cat)) for st in states if st.error is None
                    for cat in self.categories if st.missing(cat.name) > 0]
            if not asks:
                break
            requests = [self._request(st.row, cat, n, st.items.get(cat.name, []) + st.avoid.get(cat.name, []), round_no)
                        for st, cat, n in asks]
            answers = self.serving.chat(requests)
            for (st, cat, _), answer in zip(asks, answers, strict=True):
                if isinstance(answer, Exception):
                    st.error = f"category {cat.name!r}: {str(answer).strip() or type(answer).__name__}"
                    continue
                try:
                    items = parse_items(answer.text, cat.name)
                except ValueError as exc:
                    st.last_problem = f"unusable answer for {cat.name!r} ({exc}): {answer.text[:200]!r}"
                    continue
                self._accept(st, cat.name, items)
        return [self._outcome(st) for st in states]

    def _accept(self, st: _RowState, category: str, items: list[str]) -> None:
        lo, hi = self.config["min_chars"], self.config["max_chars"]
        run_wide = self.config["dedupe"] == "run"
        for raw in items:
            if st.missing(category) <= 0:
                return
            text = clean_item(raw)
            if not lo <= len(text) <= hi:
                st.last_problem = f"items outside {lo}..{hi} characters (e.g. {text[:80]!r})"
                continue
            key = normalize(text)
            if not key or key in st.keys:
                continue
            if run_wide:
                with self._lock:
                    taken = key in self._seen
                    if not taken:
                        self._seen.add(key)
                if taken:  # another row has it: tell the LLM to avoid it when asking again
                    st.avoid.setdefault(category, []).append(text)
                    continue
            st.keys.add(key)
            st.items.setdefault(category, []).append(text)

    def _outcome(self, st: _RowState) -> Outcome:
        if st.error is not None:
            self._release(st)
            return Failed(st.error)
        total = sum(len(v) for v in st.items.values())
        if total == 0:
            return Failed("the LLM gave no valid item" + (f": {st.last_problem}" if st.last_problem else ""))
        short = {c: n - len(st.items.get(c, [])) for c, n in st.targets.items() if len(st.items.get(c, [])) < n}
        if short:
            log.warning("row %s: %d of %d items after %d rounds (short: %s)", st.row.get(ID_KEY), total,
                        sum(st.targets.values()), self.config["max_rounds"], short)
        parent = {k: v for k, v in st.row.items() if k != ID_KEY}
        out_key, cat_key = self.config["output_key"], self.config["category_key"]
        return [{**parent, cat_key: cat.name, out_key: text}
                for cat in self.categories for text in st.items.get(cat.name, [])]

    def _release(self, st: _RowState) -> None:
        # A failed row is retried later: its items must not count as already produced.
        if self.config["dedupe"] == "run":
            with self._lock:
                self._seen.difference_update(st.keys)

    def _request(self, row: dict, cat: Category, n: int, have: list[str], round_no: int) -> ChatRequest:
        cfg = self.config
        plural, singular = KINDS[self.kind]
        topic_value = get_field(row, cfg["topic_key"]) if cfg["topic_key"] else None
        topic = prompt_text(topic_value) if isinstance(topic_value, (list, dict)) else topic_value
        lines = [f'Write exactly {n} {plural} in the category "{cat.name}"'
                 + (f": {cat.description}." if cat.description else ".")]
        if topic:
            subject = "the image shows" if self.kind == "instruction" else "the topic is"
            lines.append(f"Context: {subject}: {str(topic).strip()}")
        lines.append(f"Each item is one self-contained {singular} of {cfg['min_chars']} to {cfg['max_chars']} "
                     "characters, concrete and visual, and different from the others.")
        if cat.examples:
            lines.append("Examples of the category: " + "; ".join(cat.examples))
        if have and round_no:
            lines.append("Do not repeat any of these: " + "; ".join(have[:30]))
        if self.extra_instructions:
            lines.append(self.extra_instructions)
        lines.append('Answer with a JSON object only: {"items": ["...", "..."]}')
        system = (f"You write {plural} for a synthetic image dataset. You always answer with one JSON object "
                  'of the form {"items": [strings]} and nothing else.')
        return ChatRequest(messages=[{"role": "system", "content": system},
                                     {"role": "user", "content": "\n".join(lines)}],
                           json=True, temperature=cfg["temperature"], max_tokens=cfg["max_tokens"])


class _RowState:
    """What one input row has gathered so far."""

    def __init__(self, row: dict, targets: dict[str, int]):
        self.row = row
        self.targets = targets
        self.items: dict[str, list[str]] = {}
        self.keys: set[str] = set()
        self.avoid: dict[str, list[str]] = {}  # items refused as already produced by other rows
        self.error: str | None = None
        self.last_problem: str | None = None

    def missing(self, category: Any) -> int:
        name = category.name if isinstance(category, Category) else category
        return self.targets.get(name, 0) - len(self.items.get(name, []))


# -- parsing and validation helpers (pure functions, tested directly) ----------------------------
def parse_items(text: str, category: str | None = None) -> list[str]:
    """The items of an LLM's JSON answer.

    Accepts ``{"items": [...]}`` (or ``prompts``/``instructions``/``descriptions``/the category
    name/the only list in the object), a bare list, code fences around either, and items that are
    strings or objects with a ``prompt``/``instruction``/``description``/``text`` field.
    """
    body = _FENCE.sub("", (text or "").strip())
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        match = re.search(r"(\{.*\}|\[.*\])", body, re.S)
        if not match:
            raise ValueError("not JSON") from None
        try:
            data = json.loads(match.group(1))
        except json.JSONDecodeError:
            raise ValueError("not valid JSON") from None
    if isinstance(data, dict):
        keys = ["items", "prompts", "instructions", "descriptions"] + ([category] if category else [])
        found = next((data[k] for k in keys if isinstance(data.get(k), list)), None)
        if found is None:
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise ValueError('no "items" list in the JSON object')
            found = lists[0]
        data = found
    if not isinstance(data, list):
        raise ValueError("the JSON holds no list of items")
    items = []
    for item in data:
        if isinstance(item, dict):
            item = next((item[k] for k in ("prompt", "instruction", "description", "text") if isinstance(item.get(k), str)), None)
        if isinstance(item, str):
            items.append(item)
    return items


def clean_item(text: str) -> str:
    """One line, without list bullets, numbering or wrapping quotes."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    text = _BULLET.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def normalize(text: str) -> str:
    """The de-duplication key: case, spacing and punctuation do not make an item new."""
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def _ratio(value: Any, name: str) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"generate-prompts: category {name!r} has ratio {value!r}",
                          "use a number, e.g. replace:0.3 or replace:3") from None
    if ratio < 0:
        raise ConfigError(f"generate-prompts: category {name!r} has a negative ratio", "use a number >= 0")
    return ratio


def _read_categories_file(path: Path, kind: str) -> tuple[str, str | None, dict[str, Any]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"categories file {path} does not exist", "check --categories-file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"categories file {path} is not valid YAML: {str(exc).splitlines()[0]}",
                          "fix the YAML syntax") from None
    instructions = None
    if isinstance(data, dict) and isinstance(data.get("categories"), (dict, list)):
        kind = str(data.get("kind") or kind)
        instructions = data.get("instructions")
        data = data["categories"]
    if isinstance(data, list):  # a list of names, or of {name: ..., ratio: ...}
        data = {str(d.pop("name")) if isinstance(d, dict) else str(d): (d if isinstance(d, dict) else None)
                for d in [dict(x) if isinstance(x, dict) else x for x in data]}
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"categories file {path} holds no categories",
                          "write `replace: 0.3` lines, or `categories:` with name: {ratio, description}")
    if kind not in KINDS:
        raise ConfigError(f"categories file {path}: kind {kind!r} is unknown", f"use one of: {', '.join(KINDS)}")
    for name, value in data.items():
        if value is not None and not isinstance(value, (int, float, dict)):
            raise ConfigError(f"categories file {path}: category {name!r} must be a ratio or a mapping",
                              "write `name: 0.3` or `name: {ratio: 0.3, description: ...}`")
    return kind, instructions, {str(k): v for k, v in data.items()}


PROMPT_OPERATORS = [GeneratePrompts]
