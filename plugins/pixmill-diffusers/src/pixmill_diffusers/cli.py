"""``pixmill diffusers ...`` commands."""

from __future__ import annotations

import click

from .tiny import EXTRA_KINDS, KINDS


@click.group("diffusers")
def diffusers_group() -> None:
    """Local diffusion models (pixmill-diffusers)."""


@diffusers_group.command("make-tiny")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(KINDS + EXTRA_KINDS), default="flux", show_default=True,
              help="pipeline to build: FluxPipeline, FluxKontextPipeline, StableDiffusionPipeline; "
                   "sdxl-base / sdxl-refiner (an SDXL pair for --refiner), sd-upscaler "
                   "(StableDiffusionUpscalePipeline), esrgan (a Real-ESRGAN compact x4 .pth file in FOLDER)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the random weights")
def make_tiny_command(folder: str, kind: str, seed: int) -> None:
    """Write a tiny random-weight pipeline to FOLDER, loadable with from_pretrained.

    Use it to smoke-test a setup offline: `--serving flux --model FOLDER`. Its images are noise.
    """
    from .tiny import make_tiny

    path = make_tiny(folder, kind, seed)
    what = "upscaler file" if kind == "esrgan" else "pipeline"
    click.echo(f"wrote a tiny random-weight {kind} {what} to {path} (its images are noise)")
