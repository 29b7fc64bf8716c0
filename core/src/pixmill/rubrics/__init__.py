"""Judging rubrics: what a vision-language judge is asked, which images it sees, which scores it gives.

A rubric is a small YAML file (the built-in ones live next to this module; a custom one is any file
in the same format, see docs/judging.md)::

    name: my-rubric                 # optional, for messages
    description: ...                # optional
    images:                         # which images the judge sees, in this order, with their labels
      source: Source image          #   "source": the --source-key field's images (optional)
      output: Generated image       #   "output": the --image-key field's images (required)
    scores:                         # the sub-scores, each 0-10, with what they mean
      prompt_alignment: does the image show what the prompt asks for?
      visual_quality: is it free of artifacts?
    prompt: |
      Judge the image made from "{prompt}".
      {criteria}
      Reply with JSON: {format}

Placeholders in ``prompt``: ``{prompt}`` and ``{instruction}`` (the same text: the row's prompt or
edit instruction), ``{criteria}`` (one line per sub-score with its meaning) and ``{format}`` (the
JSON shape to answer in; appended automatically when the prompt lacks it). Any other braces are
left as written, so JSON examples need no escaping.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BUILTIN_DIR = Path(__file__).parent
BUILTIN_RUBRICS = ("t2i", "edit", "multi-image")
IMAGE_ROLES = ("source", "output")
RESERVED_SCORES = ("overall", "rationale", "judge", "vqascore")

_PLACEHOLDER = re.compile(r"\{(prompt|instruction|criteria|format)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FORMAT_TAIL = "\n\nReply with one JSON object and nothing else, in exactly this shape:\n{format}\n"


@dataclass(frozen=True)
class Rubric:
    """A loaded rubric: its prompt template, sub-score names (ordered) and image roles (ordered)."""

    name: str
    prompt: str
    scores: dict[str, str]
    images: dict[str, str] = field(default_factory=lambda: {"output": "Image"})
    description: str = ""
    origin: str = ""
    text: str = ""

    @property
    def needs_source(self) -> bool:
        """Whether the judge must also see the source/reference images (edit, multi-image)."""
        return "source" in self.images

    @property
    def digest(self) -> str:
        """A hash of the rubric's content: editing a rubric file recomputes the steps that used it."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def answer_format(self) -> str:
        """The JSON shape the judge must answer in (rationale first, so the model reasons, then scores)."""
        parts = ['"rationale": "<one or two sentences>"']
        parts += [f'"{name}": <0-10>' for name in self.scores]
        parts.append('"overall": <0-10>')
        return "{" + ", ".join(parts) + "}"

    def criteria(self) -> str:
        return "\n".join(f"- {name}: {desc}" if desc else f"- {name}" for name, desc in self.scores.items())

    def render(self, text: str) -> str:
        """The prompt for one row, with ``text`` (the row's prompt or instruction) filled in."""
        values = {"prompt": text, "instruction": text, "criteria": self.criteria(), "format": self.answer_format()}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.prompt)


def load_rubric(spec: str) -> Rubric:
    """A built-in rubric by name (``t2i``, ``edit``, ``multi-image``) or a rubric file by path."""
    if spec in BUILTIN_RUBRICS:
        path = BUILTIN_DIR / f"{spec}.yaml"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"rubric {spec!r} is neither a built-in rubric ({', '.join(BUILTIN_RUBRICS)}) nor a file",
                "pass --rubric t2i|edit|multi-image, or the path of a YAML rubric file (see docs/judging.md)",
            )
    text = path.read_text(encoding="utf-8")
    return parse_rubric(text, origin=str(path) if spec not in BUILTIN_RUBRICS else spec)


def parse_rubric(text: str, origin: str = "<rubric>") -> Rubric:
    """Parse and validate a rubric's YAML text; errors name the file and what to fix."""
    import yaml  # here, not at import: `pixmill --help` reads no rubric

    fix = "see docs/judging.md for the rubric file format"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"rubric {origin} is not valid YAML: {str(exc).splitlines()[0]}", fix) from None
    if not isinstance(data, dict):
        raise ConfigError(f"rubric {origin} must be a YAML mapping with `prompt:` and `scores:`", fix)
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"rubric {origin} has no `prompt:` text", fix)
    scores = _scores(data.get("scores"), origin, fix)
    images = _images(data.get("images", {"output": "Image"}), origin, fix)
    if "{format}" not in prompt:
        prompt = prompt.rstrip() + _FORMAT_TAIL
    unknown = set(data) - {"name", "description", "images", "scores", "prompt"}
    if unknown:
        raise ConfigError(f"rubric {origin}: unknown key {sorted(unknown)[0]!r}",
                          "rubric keys are: name, description, images, scores, prompt")
    return Rubric(name=str(data.get("name") or Path(origin).stem), prompt=prompt, scores=scores, images=images,
                  description=str(data.get("description") or ""), origin=origin, text=text)


def _scores(raw: Any, origin: str, fix: str) -> dict[str, str]:
    if isinstance(raw, list):
        raw = {str(name): "" for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"rubric {origin} needs `scores:`, a list of sub-score names or a mapping name: meaning", fix)
    scores: dict[str, str] = {}
    for name, desc in raw.items():
        name = str(name)
        if not _NAME.match(name) or name in RESERVED_SCORES:
            raise ConfigError(f"rubric {origin}: bad sub-score name {name!r}",
                              "use lower_snake_case names other than " + ", ".join(RESERVED_SCORES))
        scores[name] = " ".join(str(desc or "").split())
    return scores


def _images(raw: Any, origin: str, fix: str) -> dict[str, str]:
    if isinstance(raw, list):
        raw = {str(role): ("Image" if role == "output" else "Source image") for role in raw}
    if not isinstance(raw, dict) or "output" not in raw:
        raise ConfigError(f"rubric {origin}: `images:` must map roles (source, output) to labels and include output", fix)
    bad = [r for r in raw if r not in IMAGE_ROLES]
    if bad:
        raise ConfigError(f"rubric {origin}: unknown image role {bad[0]!r}", "image roles are: source, output")
    return {str(role): str(label) for role, label in raw.items()}

