"""``--scheduler NAME`` and ``--scheduler-opt KEY=VALUE``: a diffusers scheduler class and settings
of its config (``use_karras_sigmas=true``, ``algorithm_type=dpmsolver++``, ``timestep_spacing=trailing``),
checked against the class's own config keys before any work."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from pixmill.errors import ConfigError


def scheduler_class(name: str | None) -> Any:
    """The diffusers scheduler class called ``name``, or None for no name."""
    if not name:
        return None
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        raise ConfigError(f"--scheduler {name}: diffusers has no such scheduler",
                          "use a class name such as EulerDiscreteScheduler or DPMSolverMultistepScheduler")
    return cls


def checkpoint_scheduler_class(folder: str) -> Any:
    """The scheduler class a local checkpoint folder names, or None when it cannot be told."""
    config = Path(folder) / "scheduler" / "scheduler_config.json"
    try:
        name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError):
        return None
    try:
        return scheduler_class(name)
    except ConfigError:
        return None


def config_keys(cls: Any) -> dict[str, Any]:
    """The settings ``cls`` takes in its config, with their defaults."""
    params = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in params.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _value(text: str, default: Any) -> Any:
    """A KEY=VALUE value as the type the setting's default has (JSON-ish when it has none)."""
    low = text.strip().lower()
    if isinstance(default, bool) or low in ("true", "false"):
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError("use true or false")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if low in ("none", "null"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, list)) else text


def scheduler_options(cls: Any, pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings parsed and checked against ``cls``'s config; raises a one-line
    ConfigError naming the valid keys for an unknown one."""
    if not pairs:
        return {}
    keys = config_keys(cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--scheduler-opt {pair!r} is not KEY=VALUE", "write e.g. --scheduler-opt use_karras_sigmas=true")
        if key not in keys:
            raise ConfigError(f"--scheduler-opt {key}: {cls.__name__} has no such setting",
                              f"its settings are: {', '.join(sorted(keys))}")
        try:
            out[key] = _value(text, keys[key])
        except ValueError as exc:
            raise ConfigError(f"--scheduler-opt {key}={text}: {exc}",
                              f"{key} defaults to {keys[key]!r} in {cls.__name__}") from None
    return out
