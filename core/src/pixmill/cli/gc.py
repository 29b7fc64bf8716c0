"""``pixmill gc RUN``: delete retired step folders (``.stale/``) and report the space freed."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from ..errors import PixmillError


def folder_size(path: Path) -> int:
    """Bytes used by the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@click.command("gc")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("-n", "--dry-run", is_flag=True, help="list what would be deleted, delete nothing")
def command(run_dir: Path, dry_run: bool) -> None:
    """Delete the retired step folders of a run (its .stale/ folder) and report their size.

    A step folder is retired when the pipeline changes; it stays so that going back to the earlier
    pipeline finds the finished step again instead of recomputing it. Once you are sure you will
    not go back, `pixmill gc RUN` frees the space (with --dry-run first to see what goes).
    """
    from ..run_folder import MANIFEST, STEP_INFO, RunFolder, read_json  # with the command, not at --help

    if not (run_dir / MANIFEST).exists():
        raise PixmillError(f"{run_dir} is not a pixmill run folder (no {MANIFEST})", "pass the --out folder of a run")
    run = RunFolder(run_dir)
    run.lock()  # never delete under a running pipeline
    try:
        total = 0
        retired = run.retired()
        for path in retired:
            size = folder_size(path)
            total += size
            info = read_json(path / STEP_INFO) or {}
            state = "complete" if info.get("complete") else "partial"
            click.echo(f"{human(size):>10}  {path.relative_to(run_dir)}  ({info.get('name', '?')}, {state}, "
                       f"{info.get('done', info.get('rows', '?'))} rows)")
            if not dry_run:
                shutil.rmtree(path)
        verb = "would free" if dry_run else "freed"
        click.echo(f"{len(retired)} retired step folder(s), {verb} {human(total)}")
    finally:
        run.unlock()
