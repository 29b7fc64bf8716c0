"""``pixmill gallery RUN [-o FILE]``: the run as one HTML page of pictures, scores and failures."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("gallery")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("-o", "--out", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="HTML file to write (default: RUN/gallery.html; thumbnails go to <name>_files/ beside it)")
@click.option("--embed", is_flag=True,
              help="embed thumbnails in the HTML as data URIs (one file to mail; large for big runs)")
@click.option("--page-size", type=click.IntRange(1, 10_000), default=100, show_default=True, help="rows per page")
@click.option("--thumb-size", type=click.IntRange(32, 2048), default=256, show_default=True,
              help="longest thumbnail side, in pixels")
@click.option("--image-key", "image_keys", multiple=True,
              help="field holding images (repeatable; default: fields whose values are image files)")
@click.option("--prompt-key", default=None, help="field shown as the prompt (default: instruction, prompt, "
              "conversations, caption... whichever a row has)")
@click.option("--score-key", default="scores", show_default=True, help="field holding the judge's scores")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="thumbnail threads (default: 2 per core)")
@click.option("--title", default=None, help="page title")
@click.option("--allow-root", "allow_roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="also show image files under this folder (repeatable; default: only the run and input folders)")
def command(run_dir: Path, out: Path | None, embed: bool, page_size: int, thumb_size: int,
            image_keys: tuple[str, ...], prompt_key: str | None, score_key: str, workers: int | None,
            title: str | None, allow_roots: tuple[Path, ...]) -> None:
    """Write an HTML gallery of RUN: every row's images, prompt, scores, failures; sort, filter, pages."""
    from ..gallery import write_gallery

    result = write_gallery(run_dir, out, embed=embed, page_size=page_size, thumb_size=thumb_size,
                           workers=workers, image_keys=image_keys, prompt_key=prompt_key, score_key=score_key,
                           title=title, allow_roots=allow_roots)
    c, t = result.counts, result.thumbs
    click.echo(f"wrote {result.path}: {result.rows:,} rows ({c['ok']:,} ok, {c['failed']:,} failed, "
               f"{c['filtered']:,} filtered out), thumbnails {t.made:,} made, {t.cached:,} cached"
               + (f", {t.failed:,} unreadable" if t.failed else "") + f", in {result.seconds:.1f}s")
    if not result.image_columns:
        click.echo("note: no image fields found; name them with --image-key", err=True)
