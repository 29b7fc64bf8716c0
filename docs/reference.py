"""Writes docs/reference.md: every option of every registered operator, serving, executor and store,
and every CLI command, from their declarations (tests/test_docs.py checks the file is current).

    .venv/bin/python docs/reference.py > docs/reference.md
"""

from __future__ import annotations

from typing import Any

HEADER = """# Reference: operators, servings, executors, stores, commands

Generated from the code by `docs/reference.py` (a test fails when it is out of date): what the
installed plugins register, each with every option. Every option is a CLI flag, a YAML key and a
Python keyword of its owner; "in step key" says whether changing it recomputes the step.
"""


def _default(opt: Any) -> str:
    if opt.secret or opt.default in (None, "", [], {}):
        return "—"
    return f"`{opt.default}`"


def options_table(options: Any) -> list[str]:
    if not options:
        return ["No options.", ""]
    lines = ["| option | type | default | in step key | what it does |", "| --- | --- | --- | --- | --- |"]
    for opt in options:
        extra = f" One of: {', '.join(f'`{c}`' for c in opt.choices)}." if opt.choices else ""
        required = " Required." if opt.required else ""
        when = f"With `{opt.when}`: " if opt.when else ""
        text = (when + opt.help + required + extra).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{opt.flag}` | {opt.type.__name__} | {_default(opt)} | {'yes' if opt.in_key else 'no'} | {text} |")
    return [*lines, ""]


def _doc(cls: Any) -> str:
    text = getattr(cls, "description", "") or (cls.__doc__ or "").strip().splitlines()[0]
    return " ".join(text.split())


def render() -> str:
    import click
    from pixmill.cli import build_cli
    from pixmill.plugins import get_registry

    registry = get_registry()
    out = [HEADER]
    sections = (("Operators", "operators", "all_options"), ("Servings", "servings", "options"),
                ("Executors", "executors", "options"), ("Stores", "stores", "options"))
    for title, group, attr in sections:
        out += [f"## {title}", ""]
        for name, cls in sorted(registry.classes(group).items()):
            opts = getattr(cls, attr, ())
            opts = opts() if callable(opts) else opts
            caps = getattr(cls, "capabilities", None)
            needs = getattr(cls, "capability", None)
            what = f" Capabilities: {', '.join(sorted(caps))}." if caps else (f" Needs a serving that can do {needs}." if needs else "")
            out += [f"### {name}", "", f"{_doc(cls)}.{what}".replace("..", "."), "", *options_table(opts)]
    out += ["## Commands", "", "| command | what it does |", "| --- | --- |"]
    cli = build_cli()
    ctx = click.Context(cli)
    for name in sorted(cli.list_commands(ctx)):
        cmd = cli.get_command(ctx, name)
        out.append(f"| `pixmill {name}` | {cmd.get_short_help_str(limit=120)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
