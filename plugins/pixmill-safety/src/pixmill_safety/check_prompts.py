"""``check-prompts``: prompt safety before any image is made (block lists, optional moderation)."""

from __future__ import annotations

from typing import Any

from pixmill.context import StepContext
from pixmill.fields import PROMPT_FIELDS, first_present
from pixmill.operator import Dropped, Failed, Operator, Outcome
from pixmill.options import Option
from pixmill.rows import ID_KEY, get_field, prompt_text
from pixmill.serving import MODERATION

from .blocklist import BlockList


class CheckPrompts(Operator):
    """Flag (or drop) prompts that a block list or a moderation model objects to.

    Block lists (the built-in one unless ``--no-builtin``, plus ``--blocklist FILE`` files) match
    whole words and phrases after case and accent normalisation, and regular expressions. With
    ``--serving openai-moderation`` every prompt also goes to a ``/moderations`` endpoint. Writes
    ``--output-key`` (default ``prompt_check``): ``flagged`` (bool), ``categories`` (sorted names),
    ``matches`` ({category: [matched words]}) and, with a serving, ``moderation`` ({category: score}).
    Drop flagged rows with ``--drop`` (recorded in dropped.jsonl) or a later
    ``filter --where "not prompt_check.flagged"``.
    """

    name = "check-prompts"
    description = "block lists (whole-word, case/accent-insensitive) and optional /moderations; flags or drops"
    capability = MODERATION
    serving_optional = True
    options = (
        Option("input_key", str, None, "field with the prompt (default: prompt, else conversations)"),
        Option("blocklist", list, [], "block list file(s): words, phrases, re:PATTERN, [category] headers"),
        Option("builtin", bool, True, "use the built-in block list (--no-builtin: only your files)"),
        Option("output_key", str, "prompt_check", "field to write the verdict to"),
        Option("drop", bool, False, "drop flagged rows (recorded in dropped.jsonl) instead of only marking them"),
    )
    default_batch_size = 256

    def __init__(self, serving: Any = None, **options: Any):
        super().__init__(serving, **options)
        self._blocklist = BlockList.load(self.config["blocklist"], builtin=self.config["builtin"])

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        # The files' content, not just their names, decides the verdicts.
        ident["blocklists"] = {cat: p.pattern for cat, p in self._blocklist.patterns.items()}
        return ident

    def fields_read(self) -> list[tuple[str, ...]]:
        key = self.config["input_key"]
        return [(key,) if key else PROMPT_FIELDS]

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        texts: list[str | Failed] = [self._text(row) for row in rows]
        asked = [t for t in texts if isinstance(t, str)]
        verdicts = iter(self.serving.moderate(asked) if self.serving is not None and asked else [])
        out: list[Outcome] = []
        for row, text in zip(rows, texts, strict=True):
            if isinstance(text, Failed):
                out.append(text)
                continue
            matches = self._blocklist.match(text)
            verdict: dict[str, Any] = {"flagged": bool(matches), "categories": sorted(matches), "matches": matches}
            if self.serving is not None:
                result = next(verdicts)
                if isinstance(result, Exception):
                    out.append(Failed(f"row {row.get(ID_KEY)}: moderation failed: {result}"))
                    continue
                verdict["flagged"] = verdict["flagged"] or result.flagged
                verdict["categories"] = sorted(set(verdict["categories"]) | set(result.categories))
                verdict["moderation"] = result.scores
            row[self.config["output_key"]] = verdict
            if verdict["flagged"] and self.config["drop"]:
                words = ", ".join(w for ws in matches.values() for w in ws)
                detail = f"matched {words}" if words else "moderation model"
                out.append(Dropped(f"prompt flagged: {', '.join(verdict['categories'])} ({detail})",
                                   {self.config["output_key"]: verdict}))
            else:
                out.append(row)
        return out

    def _text(self, row: dict) -> str | Failed:
        key = self.config["input_key"] or first_present(row, PROMPT_FIELDS)
        value = get_field(row, key) if key else None
        if value is None:
            return Failed(f"row {row.get(ID_KEY)}: no prompt field {key or 'prompt/conversations'!r}; "
                          "pass --input-key FIELD")
        try:
            return prompt_text(value)
        except ValueError as exc:
            return Failed(f"row {row.get(ID_KEY)}: field {key!r}: {exc}")
