"""The docs the tests keep true: the generated reference is current, and every hand-written option
table in docs/ matches the declarations it describes."""

from __future__ import annotations

import importlib.util
import re

import click
from helpers import REPO
from pixmill.cli import build_cli
from pixmill.plugins import get_registry

DOCS = REPO / "docs"
ROW = re.compile(r"^\| `(--[a-z0-9-]+)[^`]*` \|(.*)$")


def _reference():
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_reference_is_current():
    expected = _reference().render()
    assert (DOCS / "reference.md").read_text(encoding="utf-8") == expected, \
        "docs/reference.md is out of date: run `.venv/bin/python docs/reference.py > docs/reference.md`"


def _all_flags() -> set[str]:
    registry = get_registry()
    flags = set()
    for group, attr in (("operators", "all_options"), ("servings", "options"), ("executors", "options"),
                        ("stores", "options")):
        for cls in registry.classes(group).values():
            opts = getattr(cls, attr, ())
            flags |= {o.flag for o in (opts() if callable(opts) else opts)}
            flags |= {"--serving-" + o.flag[2:] for o in (opts() if callable(opts) else opts)}

    def walk(cmd: click.Command) -> None:
        for p in cmd.params:
            flags.update(o for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", []) if o.startswith("--"))
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name))

    walk(build_cli())
    return flags


def test_every_flag_in_a_docs_table_exists():
    flags = _all_flags()
    unknown = []
    for page in sorted(DOCS.rglob("*.md")):
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            m = ROW.match(line)
            if m and m.group(1) not in flags:
                unknown.append(f"{page.relative_to(REPO)}:{n}: {m.group(1)}")
    assert not unknown, "documented options that no longer exist:\n" + "\n".join(unknown)


def test_serving_pages_tables_match_the_declarations():
    registry = get_registry()
    wrong = []
    for page in sorted((DOCS / "servings").glob("*.md")):
        serving = registry.classes("servings").get(page.stem)
        if serving is None:
            continue
        declared = {o.flag: o for o in serving.options}
        ref = _reference()
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            m = ROW.match(line)
            if not m or m.group(1) not in declared:
                continue
            opt = declared[m.group(1)]
            cells = [c.strip() for c in m.group(2).split("|")]
            if len(cells) >= 3 and cells[2] in ("yes", "no"):
                want = [opt.type.__name__, ref._default(opt), "yes" if opt.in_key else "no"]
                if cells[:3] != want:
                    wrong.append(f"{page.name}:{n}: {m.group(1)} documented as {cells[:3]}, declared {want}")
    assert not wrong, "\n".join(wrong)


def test_every_hook_is_documented_with_its_exact_signature():
    import inspect

    from pixmill import hookspecs

    doc = (DOCS / "hooks.md").read_text(encoding="utf-8")
    hooks = {n: f for n, f in vars(hookspecs).items() if n.startswith("register_") and callable(f)}
    assert hooks
    for name, func in hooks.items():
        params = ", ".join(inspect.signature(func).parameters)
        assert f"## `{name}({params})`" in doc, f"docs/hooks.md: no section `{name}({params})`"
