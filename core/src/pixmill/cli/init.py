"""``pixmill init DIR``: runnable example pipelines and their data."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from ..errors import PixmillError

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "demo-run", "runs", ".*")


def examples_dir() -> Path:
    """The example pipelines shipped with pixmill (``pixmill/examples``, a copy of example_data/)."""
    here = Path(__file__).resolve().parent.parent / "examples"
    if here.is_dir():
        return here
    raise PixmillError("the pixmill examples are not installed", "reinstall pixmill")


@click.command("init")
@click.argument("target", type=click.Path(path_type=Path))
def command(target: Path) -> None:
    """Copy runnable example pipelines and their data into TARGET."""
    if target.exists() and any(target.iterdir()):
        raise PixmillError(f"{target} exists and is not empty", "choose a new folder")
    shutil.copytree(examples_dir(), target, ignore=_IGNORE, dirs_exist_ok=True)
    pipelines = sorted(p.relative_to(target) for p in target.rglob("*.yaml") if "pipeline" in p.name or p.parent == target)
    click.echo(f"example pipelines copied to {target}:")
    for p in pipelines:
        click.echo(f"  {p}")
    click.echo(f"\nrun one:  cd {target} && pixmill run {pipelines[0] if pipelines else 'PIPELINE.yaml'}")
