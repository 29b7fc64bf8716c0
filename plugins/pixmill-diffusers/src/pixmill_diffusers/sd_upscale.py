"""The SD x4 upscaler (``StableDiffusionUpscalePipeline``) behind the ``diffusers`` serving's
``upscale`` capability: prompt-guided, with a noise level, batched by input size."""

from __future__ import annotations

from typing import Any

from pixmill.errors import ConfigError
from pixmill.options import Option
from pixmill.serving import ImagesOrError, UpscaleRequest

from .base import Job
from .scale import resize_to_scale

UPSCALE_OPTIONS = (
    Option("noise_level", int, None, "SD x4 upscaler: noise added to the input before upscaling, 0..350; more "
           "invents more detail (default: the pipeline's, 20)"),
)


class UpscaleMixin:
    """``upscale()`` for a diffusers serving whose checkpoint is an SD x4 upscaler."""

    def upscale(self, requests: list[UpscaleRequest]) -> list[ImagesOrError]:
        pipe = self.pipe
        if type(pipe).__name__ != "StableDiffusionUpscalePipeline":
            raise ConfigError(f"model {self.config['model']} is a {type(pipe).__name__}, not an upscaler",
                              "upscale with an SD x4 upscaler checkpoint, or --serving esrgan --model FILE")
        shared = self._defaults("upscale")
        jobs: list[Any] = []
        for r, req in enumerate(requests):
            prompt = req.prompt or ""
            negative = req.negative_prompt or self.config.get("negative_prompt")
            inputs: dict[str, Any] = {"prompt": self.truncate(prompt)[0] if prompt else "", "image": req.image}
            if negative:
                inputs["negative_prompt"] = negative
            group = (("@task", "upscale"), ("@negative", bool(negative)), ("@size", req.image.size), *shared.items())
            params = {**self.base_params(), "task": "upscale", "pipeline": type(pipe).__name__,
                      "scheduler": type(pipe.scheduler).__name__, "steps": shared["num_inference_steps"],
                      "guidance": shared["guidance_scale"], "noise_level": shared["noise_level"],
                      "prompt": inputs["prompt"], "negative_prompt": negative, "input_size": list(req.image.size),
                      "model_scale": self.native_scale(), "scale": req.scale or self.native_scale(),
                      "@scale": req.scale}
            jobs.append(Job(r, 0, req.seed, group, inputs, params))
        results = self.run_jobs(jobs, len(requests), [1] * len(requests))
        for req, result in zip(requests, results, strict=True):
            if isinstance(result, list):
                image = result[0]
                scale = image.params.pop("@scale")
                image.image = resize_to_scale(image.image, req.image.size, scale, self.native_scale())
                image.params.update(width=image.image.width, height=image.image.height)
        return results

    def native_scale(self) -> int:
        return int(self.pipe.vae_scale_factor)
