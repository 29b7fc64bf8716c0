"""``pixmill export RUN --to FILE``: the last step's rows as one file; ``--to DIR --format
hf|jsonl|parquet``: a portable dataset folder (see :mod:`pixmill.exporting`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from ..exporting import FORMATS, check_exportable, remove_stale_temps
from ..plugins import get_registry


def export_rows(run_dir: Path, to: Path, step: str | None = None, partial: bool = False) -> int:
    """Write the rows of the run's last step (or ``step``) to ``to`` (format from its suffix).
    Returns the count. A run that did not finish is refused unless ``partial`` (see
    :func:`pixmill.exporting.check_exportable`)."""
    from ..run import Run

    run = Run(run_dir)
    last = run.step(-1 if step is None else step)
    check_exportable(run, last, step, partial)
    store_cls = get_registry().store_for_suffix(to.suffix)
    if store_cls is None:
        suffixes = ", ".join(c.suffix for c in get_registry().classes("stores").values())
        raise ConfigError(f"cannot export to {to}: no store writes {to.suffix or 'extension-less'} files",
                          f"use one of: {suffixes}")
    to.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(to)
    return store_cls().write_file(to, last.rows())


def _parse_size(text: str) -> int:
    """``500MB``, ``2GB``, ``1000000`` -> bytes."""
    units = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "B": 1}
    t = text.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if t.endswith(unit):
            t, mult = t[: -len(unit)].strip(), factor
            break
    else:
        mult = 1
    try:
        value = float(t) * mult
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size", param_hint="--max-shard-size") from None
    if value <= 0:
        raise click.BadParameter("must be above 0", param_hint="--max-shard-size")
    return int(value)


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--to", "to", type=click.Path(path_type=Path), required=True,
              help="a folder (with --format), or a .jsonl/.parquet file (the rows as they are)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="hf: Parquet shards with image columns that Hugging Face datasets decodes, and a card; "
                   "jsonl/parquet: one data file, images copied beside it, paths rewritten")
@click.option("--image-key", "image_keys", multiple=True,
              help="field holding images (repeatable; default: fields whose values are image files)")
@click.option("--score-key", default="scores", show_default=True, help="field holding the judge's scores (for the card)")
@click.option("--shard-rows", type=click.IntRange(1), default=None, help="hf: at most this many rows per shard")
@click.option("--max-shard-size", default="500MB", show_default=True, help="hf: about this much image data per shard")
@click.option("--split", default="train", show_default=True, help="split name in file names and the card")
@click.option("--allow-root", "allow_roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="also read image files under this folder (repeatable; default: only the run and input folders)")
@click.option("--step", default=None, help="export this step's rows instead of the last step's "
              "(folder name, number or operator name)")
@click.option("--partial", is_flag=True, help="export a run that did not finish (killed, interrupted): the rows "
              "committed so far, marked as partial in the card and export.json")
def command(run_dir: Path, to: Path, fmt: str | None, image_keys: tuple[str, ...], score_key: str,
            shard_rows: int | None, max_shard_size: str, split: str, allow_roots: tuple[Path, ...],
            step: str | None, partial: bool) -> None:
    """Export the last step's rows of RUN: to a file (.jsonl, or .parquet with pixmill-parquet), or
    with --format to a dataset folder that training code loads as it is."""
    if fmt is None:
        if not to.suffix:
            raise click.UsageError(f"--to {to} has no file extension: pass --format hf|jsonl|parquet to export "
                                   "a dataset folder, or name a .jsonl/.parquet file")
        count = export_rows(run_dir, to, step=step, partial=partial)
        click.echo(f"wrote {count:,} rows to {to}")
        return
    from ..exporting import export_dataset

    result = export_dataset(run_dir, to, fmt, image_keys=image_keys, score_key=score_key, shard_rows=shard_rows,
                            max_shard_bytes=_parse_size(max_shard_size), split=split, allow_roots=allow_roots,
                            step=step, partial=partial)
    files = ", ".join(str(f.relative_to(result.path)) for f in result.files[:3])
    more = f" and {len(result.files) - 3} more" if len(result.files) > 3 else ""
    click.echo(f"wrote {result.rows:,} rows, {result.images:,} images to {result.path} ({files}{more}, README.md)")
    if result.missing:
        rid, path = result.missing[0]
        click.echo(f"warning: {len(result.missing):,} image files not found, exported as null "
                   f"(e.g. row {rid}: {path})", err=True)
    if result.partial:
        click.echo(f"note: exported {result.partial}", err=True)
    if result.refused:
        rid, _path, reason = result.refused[0]
        click.echo(f"warning: {len(result.refused):,} files refused, exported as null (e.g. row {rid}: {reason})",
                   err=True)
    if not result.image_columns:
        click.echo("note: no image fields found; name them with --image-key", err=True)
