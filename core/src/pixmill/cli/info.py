"""``pixmill plugins``, ``pixmill operators``, ``pixmill servings``: what is installed."""

from __future__ import annotations

import json
from typing import Callable

import click

from ..options import Option
from ..plugins import get_registry


def _options(options: tuple[Option, ...]) -> list[dict]:
    return [{"name": o.name, "flag": o.flag, "type": o.type.__name__, "default": None if o.secret else o.default,
             "help": o.help, **({"choices": list(o.choices)} if o.choices else {}),
             **({"required": True} if o.required else {}), **({"when": o.when} if o.when else {})} for o in options]


@click.command("plugins")
def plugins_cmd() -> None:
    """List installed plugins as JSON: distribution, version, what each registered, load errors."""
    registry = get_registry()
    data = [p.as_dict() for p in registry.plugins]
    if registry.conflicts:
        data.append({"conflicts": registry.conflicts})
    click.echo(json.dumps(data, indent=2))


@click.command("operators")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def operators_cmd(as_json: bool) -> None:
    """List the operators you can chain in `pixmill run`, with their options."""
    _show(_items("operators", lambda cls: {"capability": cls.capability, "options": _options(cls.all_options())}),
          as_json, "capability")


@click.command("servings")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def servings_cmd(as_json: bool) -> None:
    """List the model backends (servings), their capabilities and options."""
    _show(_items("servings", lambda cls: {"capabilities": sorted(cls.capabilities), "options": _options(cls.options)}),
          as_json, "capabilities")


def _items(kind: str, details: Callable[[type], dict]) -> list[dict]:
    """One listing entry per registered class of ``kind``: name, description, plugin, details."""
    registry = get_registry()
    items = []
    for name, cls in registry.classes(kind).items():
        info = registry.provider(kind, name)
        items.append({"name": name, "description": cls.description,
                      "plugin": info.distribution if info else None, **details(cls)})
    return items


def _show(items: list[dict], as_json: bool, extra: str) -> None:
    if as_json:
        click.echo(json.dumps(items, indent=2, default=str))
        return
    if not items:
        click.echo("none installed")
    for item in items:
        tag = item[extra]
        tag = ", ".join(tag) if isinstance(tag, list) else (tag or "no model")
        click.echo(f"{item['name']}  ({tag}; from {item['plugin']})")
        if item["description"]:
            click.echo(f"    {item['description']}")
        for opt in item["options"]:
            default = f" [default: {opt['default']}]" if opt["default"] not in (None, "") else ""
            click.echo(f"    {opt['flag']:<26} {opt['type']:<6} {opt['help']}{default}")
        click.echo("")


commands = [plugins_cmd, operators_cmd, servings_cmd]
