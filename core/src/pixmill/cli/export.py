"""``pixmill export RUN --to FILE``: the last step's rows as one file."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from ..plugins import get_registry
from ..run_folder import RunFolder


def export_rows(run_dir: Path, to: Path) -> int:
    """Write the rows of the run's last step to ``to`` (format from its suffix). Returns the count."""
    steps = RunFolder(run_dir).steps()
    if not steps:
        raise ConfigError(f"run {run_dir} has no steps", "run a pipeline into it first")
    last = steps[-1]
    store_cls = get_registry().store_for_suffix(to.suffix)
    if store_cls is None:
        suffixes = ", ".join(c.suffix for c in get_registry().classes("stores").values())
        raise ConfigError(f"cannot export to {to}: no store writes {to.suffix or 'extension-less'} files",
                          f"use one of: {suffixes}")
    to.parent.mkdir(parents=True, exist_ok=True)
    return store_cls().write_file(to, last.iter_rows())


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--to", "to", type=click.Path(path_type=Path), required=True, help="output file (.jsonl or .parquet)")
def command(run_dir: Path, to: Path) -> None:
    """Export the last step's rows of a run to FILE (.jsonl, or .parquet with pixmill-parquet)."""
    count = export_rows(run_dir, to)
    click.echo(f"wrote {count:,} rows to {to}")
