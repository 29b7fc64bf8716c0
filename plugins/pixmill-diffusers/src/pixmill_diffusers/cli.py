"""``pixmill diffusers ...`` commands."""

from __future__ import annotations

import click

from .tiny import ADDON_KINDS, EXTRA_KINDS, KINDS
from .tiny_estimators import ESTIMATOR_KINDS

_WHAT = {"flux": "FluxPipeline", "flux-kontext": "FluxKontextPipeline", "sd": "StableDiffusionPipeline",
         "sdxl": "StableDiffusionXLPipeline", "sdxl-base": "StableDiffusionXLPipeline (base)",
         "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline (refiner)", "sd-upscaler": "StableDiffusionUpscalePipeline",
         "esrgan": "Real-ESRGAN compact upscaler file", "controlnet": "ControlNet", "lora": "LoRA",
         "ip-adapter": "IP-Adapter", "depth": "Depth Anything depth estimator", "pose": "ViTPose pose estimator",
         "person-detector": "RT-DETR person detector"}


@click.group("diffusers")
def diffusers_group() -> None:
    """Local diffusion models (pixmill-diffusers)."""


@diffusers_group.command("make-tiny")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(KINDS + EXTRA_KINDS + ADDON_KINDS + ESTIMATOR_KINDS), default="flux", show_default=True,
              help="a pipeline (flux, flux-kontext, sd, sdxl; sdxl-base / sdxl-refiner: an SDXL pair for "
                   "--refiner; sd-upscaler), an upscaler file (esrgan: a Real-ESRGAN compact x4 .pth in FOLDER), "
                   "an add-on for a pipeline made before (controlnet, lora, ip-adapter: needs --base), or an "
                   "estimator for control-image (depth, pose, person-detector)")
@click.option("--base", type=click.Path(file_okay=False, exists=True), default=None,
              help="for controlnet, lora and ip-adapter: the tiny pipeline folder the add-on plugs into")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the random weights")
def make_tiny_command(folder: str, kind: str, base: str | None, seed: int) -> None:
    """Write a tiny random-weight pipeline (or add-on) to FOLDER, loadable with from_pretrained.

    Use it to smoke-test a setup offline: `--serving flux --model FOLDER`, or
    `--controlnet FOLDER` / `--lora FOLDER` / `--ip-adapter FOLDER --ip-adapter-weight-name
    ip-adapter.safetensors` next to a `--model` made with the same command, or `control-image
    --kind depth --model FOLDER` (pose: `--kind pose --model FOLDER [--detector FOLDER2]`). Its
    images are noise.
    """
    from .tiny import make_tiny

    if kind in ADDON_KINDS:
        if base is None:
            raise click.UsageError(f"--kind {kind} plugs into a pipeline: pass --base PIPELINE_DIR "
                                   "(make one first with --kind sd, sdxl or flux)")
        from .tiny import make_tiny_lora
        from .tiny_addons import make_tiny_controlnet, make_tiny_ip_adapter

        build = {"controlnet": make_tiny_controlnet, "lora": make_tiny_lora, "ip-adapter": make_tiny_ip_adapter}[kind]
        path = build(base, folder, seed=seed)
        click.echo(f"wrote a tiny random-weight {_WHAT[kind]} for {base} to {path} (its effect is noise)")
        return
    if base is not None:
        raise click.UsageError(f"--base is for add-ons ({', '.join(ADDON_KINDS)}), not --kind {kind}")
    path = make_tiny(folder, kind, seed)
    click.echo(f"wrote a tiny random-weight {_WHAT[kind]} to {path} "
               f"({'its predictions' if kind in ESTIMATOR_KINDS else 'its images'} are noise)")
