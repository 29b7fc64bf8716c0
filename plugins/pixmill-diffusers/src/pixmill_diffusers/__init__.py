"""pixmill-diffusers: local diffusion servings for pixmill.

- ``flux``: FLUX.1 text-to-image (FluxPipeline)
- ``flux-kontext``: FLUX.1 Kontext image editing (FluxKontextPipeline)
- ``diffusers``: any other diffusers text-to-image, image-to-image or inpainting pipeline, and the
  SD x4 upscaler (``upscale-images``)
- ``esrgan``: GAN upscalers (Real-ESRGAN, ESRGAN...) from a weights file, through spandrel
- ``control-image``: an operator that makes ControlNet control images (canny edges with OpenCV;
  depth maps and OpenPose-style pose skeletons from transformers models)
- ``pixmill diffusers make-tiny DIR --kind KIND``: a tiny random-weight pipeline (or upscaler file)
  for smoke tests (``--kind controlnet|lora|ip-adapter --base DIR``: an add-on for one;
  ``--kind depth|pose|person-detector``: an estimator for ``control-image``)

torch and diffusers are imported only when a serving loads, so ``pixmill --help`` stays fast.
"""

from __future__ import annotations

from pixmill.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_servings(register):
    from .auto import AutoDiffusersServing
    from .esrgan import EsrganServing
    from .flux import FluxServing
    from .kontext import FluxKontextServing

    register(FluxServing)
    register(FluxKontextServing)
    register(AutoDiffusersServing)
    register(EsrganServing)


@hookimpl
def register_operators(register):
    from .control_image import ControlImage

    register(ControlImage)


@hookimpl
def register_commands(cli):
    from .cli import diffusers_group

    cli.add_command(diffusers_group, "diffusers")
