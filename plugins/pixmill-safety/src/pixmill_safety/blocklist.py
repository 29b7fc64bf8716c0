"""Block lists for prompts: words, phrases and regular expressions, matched whole-word on text
normalised for case and accents (``Nüde`` matches ``nude``; ``nudes`` does not match ``nude``).

File format (UTF-8 text, one entry per line)::

    # comment
    [violence]            # a category for the entries below (default: "blocked")
    gore
    behead                # a word; a phrase matches across any run of spaces
    re:decapitat\\w*       # a regular expression over the normalised text (use \\w* for word forms)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

DEFAULT_CATEGORY = "blocked"
BUILTIN = "builtin.txt"


def normalize(text: str) -> str:
    """Case-folded, accents removed, compatibility forms unified (full-width letters, ligatures),
    whitespace runs collapsed to one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


@dataclass
class BlockList:
    """Compiled entries by category; :meth:`match` gives {category: [matched text, ...]}."""

    patterns: dict[str, re.Pattern] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, files: list[Path | str], builtin: bool = True) -> BlockList:
        entries: dict[str, list[str]] = {}
        sources = []
        if builtin:
            text = resources.files(__package__).joinpath("blocklists", BUILTIN).read_text(encoding="utf-8")
            _parse(text, "built-in list", entries)
            sources.append("builtin")
        for path in files:
            path = Path(path).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                from pixmill.errors import ConfigError

                raise ConfigError(f"check-prompts: block list {path} cannot be read ({exc.strerror})",
                                  "pass an existing UTF-8 text file to --blocklist") from None
            _parse(text, str(path), entries)
            sources.append(str(path))
        return cls({cat: re.compile("|".join(parts)) for cat, parts in entries.items() if parts}, sources)

    def match(self, text: str) -> dict[str, list[str]]:
        norm = normalize(text)
        hits: dict[str, list[str]] = {}
        for category, pattern in self.patterns.items():
            found = sorted({m.group(0) for m in pattern.finditer(norm)})
            if found:
                hits[category] = found
        return hits


def _parse(text: str, source: str, entries: dict[str, list[str]]) -> None:
    category = DEFAULT_CATEGORY
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("re:") else raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            category = line[1:-1].strip() or DEFAULT_CATEGORY
            continue
        if line.startswith("re:"):
            body = line[3:]
            try:
                re.compile(body)
            except re.error as exc:
                from pixmill.errors import ConfigError

                raise ConfigError(f"check-prompts: {source}:{lineno}: bad regular expression {body!r} ({exc})",
                                  "fix the pattern (Python re syntax) or remove the line") from None
        else:
            words = normalize(line).split(" ")
            body = r"\s+".join(re.escape(w) for w in words)
        # Whole words only: no word character right before or after the match.
        entries.setdefault(category, []).append(rf"(?<!\w)(?:{body})(?!\w)")
