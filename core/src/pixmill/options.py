"""Typed options that operators, servings, stores and executors declare.

One declaration drives everything: the CLI flags (``--input-key``), YAML keys (``input_key``), the
Python keyword arguments, validation with clear errors, and which values enter a step's cache key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import ConfigError

_TYPES = (str, int, float, bool, list, dict)


@dataclass(frozen=True)
class Option:
    """One declared option.

    - ``type``: ``str``, ``int``, ``float``, ``bool``, ``list`` (of strings; CLI: repeat the flag or
      give a comma list) or ``dict`` (any JSON value; CLI: a JSON string).
    - ``cache``: whether the value changes what a step produces, so enters the step key. Options that
      only change *how* work runs (concurrency, timeouts, devices, batch size) set ``cache=False``, so
      changing them never recomputes finished work.
    - ``secret``: never written anywhere (manifest, logs, step key); implies ``cache=False``.
    - ``when``: the setting of its owner under which the option applies (``"--engine openai"``);
      shown in help and the reference. The owner ignores the option otherwise.
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    required: bool = False
    cache: bool = True
    secret: bool = False
    when: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise TypeError(f"option {self.name!r}: type must be one of {_TYPES}, not {self.type!r}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def in_key(self) -> bool:
        return self.cache and not self.secret

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert a value from the CLI, YAML or Python to the declared type, or raise ConfigError."""
        if value is None:
            return None
        try:
            value = _coerce(self.type, value)
        except (TypeError, ValueError) as exc:
            # A secret's value never reaches a message, whatever its type (a key pasted as a list).
            shown = f"a {type(value).__name__} (value hidden)" if self.secret else repr(value)
            raise ConfigError(
                f"{owner}: option {self.flag} got {shown}, expected {self.type.__name__}",
                f"pass a valid {self.type.__name__} ({exc})",
            ) from None
        if self.choices is not None:
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in self.choices]
            if bad:
                raise ConfigError(
                    f"{owner}: option {self.flag} got {'a value (hidden)' if self.secret else repr(bad[0])}",
                    f"choose one of {', '.join(map(str, self.choices))}",
                )
        return value


def _coerce(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("use true/false")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("not an integer")
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError("not a number")
        return float(value)
    if kind is list:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            return [v if isinstance(v, (str, int, float)) else json.dumps(v) for v in value]
        raise ValueError("not a list")
    if kind is dict:
        if isinstance(value, str):
            return json.loads(value)
        return value
    if not isinstance(value, (str, int, float)):
        raise ValueError("not a string")
    return str(value)


def resolve_options(
    declared: Iterable[Option], given: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Validate ``given`` against ``declared``: unknown names, types, choices, required options.

    Returns every declared option, with defaults filled in. Keys may use dashes or underscores.
    """
    by_name = {opt.name: opt for opt in declared}
    resolved: dict[str, Any] = {}
    for raw_name, value in given.items():
        name = raw_name.replace("-", "_")
        opt = by_name.get(name)
        if opt is None:
            known = ", ".join(o.flag for o in by_name.values()) or "none"
            raise ConfigError(f"{owner}: unknown option --{raw_name.replace('_', '-')}",
                              f"its options are: {known}")
        if value is not None:
            resolved[name] = opt.coerce(value, owner)
    for opt in by_name.values():
        if opt.name not in resolved:
            if opt.required:
                raise ConfigError(f"{owner}: option {opt.flag} is required", f"pass {opt.flag} VALUE")
            resolved[opt.name] = opt.default
    return resolved


def key_options(declared: Iterable[Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of option values that enter a step key (no secrets, no run-only settings)."""
    return {opt.name: values.get(opt.name) for opt in declared if opt.in_key}


def public_options(declared: Iterable[Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """Option values safe to write to a manifest: secrets removed."""
    secret = {opt.name for opt in declared if opt.secret}
    return {k: v for k, v in values.items() if k not in secret}
