"""``pixmill init DIR``: runnable example pipelines and their data, listed by what they need."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from ..errors import PixmillError

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "demo-run", "runs", ".*")
# What an example needs, in the order they are suggested: the first group runs anywhere.
NEEDS = {
    "offline": "offline (no model download, no key, no GPU)",
    "api-key": "an API key",
    "server": "a model server you run",
    "gpu": "a GPU and model weights",
}


def examples_dir() -> Path:
    """The example pipelines shipped with pixmill (``pixmill/examples``, a copy of example_data/)."""
    here = Path(__file__).resolve().parent.parent / "examples"
    if here.is_dir():
        return here
    raise PixmillError("the pixmill examples are not installed", "reinstall pixmill")


def example_needs(path: Path) -> tuple[str, str] | None:
    """(group, detail) from an example's ``# needs: GROUP: detail`` line; None for files that are
    not runnable examples."""
    for line in path.read_text(encoding="utf-8").splitlines()[:20]:
        text = line.lstrip("#").strip()
        if text.startswith("needs:"):
            group, _, detail = text[len("needs:"):].strip().partition(":")
            return group.strip(), detail.strip()
    return None


def list_examples(folder: Path) -> list[tuple[str, str, Path]]:
    """Every runnable example under ``folder`` as (group, detail, path), offline ones first."""
    found = []
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.py")]):
        needs = example_needs(path)
        if needs is not None and needs[0] in NEEDS:
            found.append((*needs, path.relative_to(folder)))
    order = list(NEEDS)
    # Within a group, pipeline files before scripts: they show the shape a user will write.
    return sorted(found, key=lambda e: (order.index(e[0]), e[2].suffix != ".yaml", str(e[2])))


def how_to_run(path: Path) -> str:
    return f"python {path}" if path.suffix == ".py" else f"pixmill run {path}"


@click.command("init")
@click.argument("target", type=click.Path(path_type=Path))
def command(target: Path) -> None:
    """Copy runnable example pipelines and their data into TARGET, and list them by what they need
    (offline, an API key, a server, a GPU). Every example runs from TARGET."""
    if target.exists() and any(target.iterdir()):
        raise PixmillError(f"{target} exists and is not empty", "choose a new folder")
    shutil.copytree(examples_dir(), target, ignore=_IGNORE, dirs_exist_ok=True)
    examples = list_examples(target)
    click.echo(f"example pipelines copied to {target}, by what they need:")
    group = None
    for need, detail, path in examples:
        if need != group:
            group = need
            click.echo(f"\n  {NEEDS[need]}:")
        click.echo(f"    {how_to_run(path):<52} {detail}")
    if examples:
        click.echo(f"\nstart with:  cd {target} && {how_to_run(examples[0][2])}")
