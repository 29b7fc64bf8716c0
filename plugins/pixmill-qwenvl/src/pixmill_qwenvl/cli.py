"""``pixmill qwenvl ...``: commands of the qwen-vl plugin."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def qwenvl() -> None:
    """Tools for the qwen-vl serving (Qwen2.5-VL)."""


@qwenvl.command("make-tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--preset", type=click.Choice(["tiny", "small"]), default="tiny", show_default=True,
              help="tiny: CPU smoke tests; small: head dims of 64 for GPU kernels (vLLM)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the random weights")
def make_tiny(directory: Path, preset: str, seed: int) -> None:
    """Write a random-weight Qwen2.5-VL model folder to DIRECTORY, built offline.

    It loads like a real checkpoint (`--model DIRECTORY`) and answers with random tokens: use it to
    smoke-test a judge or caption pipeline without downloading weights.
    """
    from .tiny import build_tiny_qwen_vl

    path = build_tiny_qwen_vl(directory, preset=preset, seed=seed)
    click.echo(f"wrote a random-weight Qwen2.5-VL ({preset}) to {path}")
    click.echo(f"try: pixmill run ... judge --serving qwen-vl --engine transformers --model {path}")
