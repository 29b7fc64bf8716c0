"""The ``flux`` serving: text-to-image with diffusers' FluxPipeline (FLUX.1-dev, FLUX.1-schnell,
or any compatible checkpoint)."""

from __future__ import annotations

from typing import Any

from pixmill.errors import ConfigError
from pixmill.serving import TEXT_TO_IMAGE, ImageRequest, ImagesOrError

from .base import DiffusersServing, Job
from .conditioning import ConditionedServing
from .model_path import pipeline_class_name
from .options import COMMON_OPTIONS, CONTROLNET_OPTIONS, IP_ADAPTER_OPTIONS, SPEED_OPTIONS
from .speed import PIXEL_OPTIONS, apply_speed_options, check_speed_options


class FluxServing(ConditionedServing, DiffusersServing):
    """FLUX.1 text-to-image. Defaults follow the checkpoint: a guidance-distilled model (dev) runs
    28 steps at guidance 3.5 with 512 text tokens; one without guidance embedding (schnell) runs
    4 steps at guidance 0 with 256 text tokens. ``--controlnet`` switches to FluxControlNetPipeline;
    ``--ip-adapter`` adds image prompts. Options: docs/servings/flux.md."""

    name = "flux"
    description = "FLUX.1 text-to-image with diffusers' FluxPipeline (dev, schnell, compatible checkpoints)"
    capabilities = frozenset({TEXT_TO_IMAGE})
    pipeline_class = "FluxPipeline"
    default_guidance = 3.5
    options = (*COMMON_OPTIONS, *SPEED_OPTIONS, *CONTROLNET_OPTIONS, *IP_ADAPTER_OPTIONS)

    def check(self) -> None:
        super().check()
        found = pipeline_class_name(self.config)
        if found and not found.startswith("Flux"):
            raise ConfigError(f"--model {self.config['model']} is a {found}: the {self.name} serving runs FLUX.1 "
                              "pipelines", "use --serving diffusers for it (SD 1.5, SDXL, SD3 and other pipelines)")
        self.check_conditioning(flux=True)
        check_speed_options(self.config, self.devices)

    def speed_up(self, pipe: Any, device: str) -> None:
        apply_speed_options(pipe, self.config, device, self.denoiser)

    def base_params(self) -> dict[str, Any]:
        params = super().base_params()
        params.update({k: self.config[k] for k in PIXEL_OPTIONS if self.config.get(k) is not None})
        return params

    def load_pipeline(self, where: str, **kwargs: Any) -> Any:
        import diffusers

        cls = self.pipeline_class
        if self.controlnets:
            kwargs["controlnet"] = self.controlnets.load(torch_dtype=kwargs["torch_dtype"])
            cls = "FluxControlNetPipeline"
        return getattr(diffusers, cls).from_pretrained(where, **kwargs)

    def configure(self, pipe: Any) -> None:
        self.ip_adapter.load_into(pipe, flux=True)

    # -- defaults that depend on the checkpoint -------------------------------------------------
    @property
    def guidance_distilled(self) -> bool:
        return bool(getattr(self.pipe.transformer.config, "guidance_embeds", True))

    def steps(self) -> int:
        return int(self.config.get("steps") or (28 if self.guidance_distilled else 4))

    def guidance(self) -> float:
        g = self.config.get("guidance")
        return float(g if g is not None else (self.default_guidance if self.guidance_distilled else 0.0))

    def max_sequence_length(self) -> int:
        return int(self.config.get("max_sequence_length") or (512 if self.guidance_distilled else 256))

    def text_limit(self) -> tuple[Any, int]:
        return self.pipe.tokenizer_2, self.max_sequence_length()

    def size_multiple(self) -> int:
        return int(self.pipe.vae_scale_factor) * 2  # latents are packed 2x2

    def shared(self) -> tuple[tuple, dict[str, Any]]:
        """Group items and provenance common to every image of this serving's current settings."""
        steps, guidance, msl = self.steps(), self.guidance(), self.max_sequence_length()
        group = (("num_inference_steps", steps), ("guidance_scale", guidance), ("max_sequence_length", msl))
        params = {**self.base_params(), "steps": steps, "guidance": guidance, "max_sequence_length": msl}
        return group, params

    def generate(self, requests: list[ImageRequest]) -> list[ImagesOrError]:
        shared, base = self.shared()
        jobs: list[Any] = []
        for r, req in enumerate(requests):
            try:
                prompt, cut, width, height = self.prepare(req.prompt, *self.sized_for_control(req))
                cond = self.conditioning(req, self.pipe)
            except Exception as exc:  # noqa: BLE001 - this request fails alone
                jobs.append((r, exc))
                continue
            if req.negative_prompt:
                self.warn_once("negative", "flux ignores negative prompts (FLUX.1 is guidance-distilled)")
            group = (*shared, ("height", height), ("width", width), *cond.group)
            params = {**base, "prompt": prompt, "prompt_truncated": cut, **cond.params}
            jobs += [Job(r, k, seed, group, {"prompt": prompt, **cond.inputs}, params, cond.shared)
                     for k, seed in enumerate(req.seeds)]
        return self.run_jobs(jobs, len(requests), [len(r.seeds) for r in requests])
