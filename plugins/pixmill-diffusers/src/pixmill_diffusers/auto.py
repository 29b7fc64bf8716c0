"""The ``diffusers`` serving: any other diffusers text-to-image, image-to-image or inpainting
pipeline (SD 1.5, SDXL, SD3...) through the AutoPipeline classes."""

from __future__ import annotations

import inspect
from typing import Any

from pixmill.errors import ConfigError, RowError
from pixmill.options import Option
from pixmill.serving import IMAGE_EDIT, TEXT_TO_IMAGE, UPSCALE, EditRequest, ImageRequest, ImagesOrError

from .base import DiffusersServing, Job
from .checkpoint import UPSCALER_CLASSES, pipeline_class_name
from .conditioning import ConditionedServing
from .model_path import resolve_model
from .options import COMMON_OPTIONS, CONTROLNET_OPTIONS, IP_ADAPTER_OPTIONS
from .refiner import REFINER_OPTIONS, check_refiner, denoising_split, load_refiner, run_with_refiner
from .schedulers import checkpoint_scheduler_class, scheduler_class, scheduler_options
from .sd_upscale import UPSCALE_OPTIONS, UpscaleMixin

_AUTO = {"text2img": "AutoPipelineForText2Image", "img2img": "AutoPipelineForImage2Image",
         "inpaint": "AutoPipelineForInpainting"}


class AutoDiffusersServing(UpscaleMixin, ConditionedServing, DiffusersServing):
    """Any diffusers checkpoint, loaded once with its own pipeline class; text-to-image, image-to-
    image (``edit-images`` without a mask) and inpainting (with ``--mask-key``) share its weights
    through ``AutoPipeline*.from_pipe``. With ``--controlnet`` the loaded pipeline becomes its
    ControlNet variant (and so do the derived ones); ``--ip-adapter`` adds image prompts. An SD x4
    upscaler checkpoint serves ``upscale-images`` instead. Options: docs/servings/diffusers.md."""

    name = "diffusers"
    description = ("any diffusers pipeline (SD 1.5, SDXL, SD3...): text-to-image, image-to-image, inpainting; "
                   "the SD x4 upscaler")
    capabilities = frozenset({TEXT_TO_IMAGE, IMAGE_EDIT, UPSCALE})
    options = (
        *COMMON_OPTIONS,
        Option("negative_prompt", str, None, "what to steer away from (a row's own negative prompt wins)"),
        Option("strength", float, None, "image-to-image/inpainting: how much of the input to repaint, 0..1 "
               "(default: the pipeline's)"),
        Option("scheduler", str, None, "a diffusers scheduler class, e.g. EulerDiscreteScheduler, "
               "DPMSolverMultistepScheduler (default: the checkpoint's)"),
        Option("scheduler_opt", list, None, "a setting of the scheduler's config as KEY=VALUE (repeatable), "
               "e.g. use_karras_sigmas=true, algorithm_type=dpmsolver++, timestep_spacing=trailing"),
        *REFINER_OPTIONS,
        *UPSCALE_OPTIONS,
        Option("safety_checker", bool, False, "keep the checkpoint's safety checker (SD 1.x/2.x) and record its "
               "verdict per image as nsfw_detected in the provenance (flagged images come back black); "
               "default: not loaded"),
        *CONTROLNET_OPTIONS,
        *IP_ADAPTER_OPTIONS,
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._tasks: dict[str, Any] = {}
        self._refiner: Any = None
        # What the checkpoint is decides what this serving can do with it (an upscaler upscales
        # only); unknown until downloaded for a hub id, then everything is allowed.
        self._pipeline_class = pipeline_class_name(self.config)
        if self._pipeline_class in UPSCALER_CLASSES:
            self.capabilities = frozenset({UPSCALE})
        elif self._pipeline_class is not None:
            self.capabilities = frozenset({TEXT_TO_IMAGE, IMAGE_EDIT})

    def capability_hint(self, capability: str) -> str | None:
        model = self.config["model"]
        if self._pipeline_class in UPSCALER_CLASSES:
            return (f"model {model} is an upscaler ({self._pipeline_class}): run it with "
                    f"`upscale-images --serving diffusers --model {model}`")
        if capability == UPSCALE:
            return (f"model {model} is a {self._pipeline_class}, not an upscaler: upscale with an SD x4 upscaler "
                    "checkpoint (--serving diffusers --model stabilityai/stable-diffusion-x4-upscaler) or a GAN "
                    "upscaler file (--serving esrgan --model FILE)")
        return None

    def check(self) -> None:
        super().check()
        check_refiner(self.config)
        cls = self._scheduler_class()
        if cls is None and self.config.get("scheduler_opt"):
            try:
                cls = checkpoint_scheduler_class(resolve_model(self.config, download=False)[0])
            except ConfigError:
                cls = None  # a hub id still to download: checked when it loads
        if cls is not None:
            scheduler_options(cls, self.config.get("scheduler_opt"))
        self.check_conditioning()

    def _scheduler_class(self) -> Any:
        return scheduler_class(self.config.get("scheduler"))

    @property
    def denoiser(self) -> str:  # type: ignore[override]
        return "unet" if getattr(self._pipe, "unet", None) is not None else "transformer"

    def load_pipeline(self, where: str, **kwargs: Any) -> Any:
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        index = DiffusionPipeline.load_config(where, **{k: v for k, v in kwargs.items()
                                                       if k in ("revision", "cache_dir")})
        has_checker = (index.get("safety_checker") or [None])[0] is not None
        if self.config["safety_checker"] and not has_checker:
            raise ConfigError(f"--safety-checker: {self.config['model']} has no safety checker",
                              "drop --safety-checker, or filter images with detect-nsfw (pixmill-safety)")
        if has_checker and not self.config["safety_checker"]:
            kwargs.update(safety_checker=None, requires_safety_checker=False)  # never loaded: saves memory
        pipe = DiffusionPipeline.from_pretrained(where, **kwargs)
        if self.controlnets:
            # The ControlNet variant of the checkpoint's pipeline; the task pipelines derived from it
            # (image-to-image, inpainting) are ControlNet pipelines too.
            nets = self.controlnets.load(torch_dtype=kwargs["torch_dtype"])
            pipe = AutoPipelineForText2Image.from_pipe(pipe, controlnet=nets)
        return pipe

    def _call(self, group: tuple, chunk: list) -> list[Any]:
        self._verdicts: list[Any] | None = None
        images = super()._call(group, chunk)
        if self.config["safety_checker"]:
            verdicts = self._verdicts or [None] * len(chunk)
            for job, flagged in zip(chunk, verdicts, strict=True):
                # A fresh dict: the jobs of one request share their params dict.
                job.params = {**job.params, "nsfw_detected": None if flagged is None else bool(flagged)}
        return images

    def configure(self, pipe: Any) -> None:
        self._configure_scheduler(pipe)
        self.ip_adapter.load_into(pipe, flux=type(pipe).__name__.startswith("Flux"))

    def _configure_scheduler(self, pipe: Any) -> None:
        cls = self._scheduler_class() or type(pipe.scheduler)
        settings = scheduler_options(cls, self.config.get("scheduler_opt"))
        if self.config.get("scheduler") or settings:
            pipe.scheduler = cls.from_config(pipe.scheduler.config, **settings)

    def load(self) -> None:
        super().load()
        if self.config.get("refiner"):
            refiner = load_refiner(self._pipe, self.config, self._pipe.dtype)
            self._configure_scheduler(refiner)  # the same scheduler and settings on both sides of the split
            self._place(refiner, self._device or "cpu")
            self._refiner = refiner

    def unload(self) -> None:
        self._tasks.clear()
        self._refiner = None
        super().unload()

    def task_pipe(self, task: str) -> Any:
        """The pipeline for ``task`` (text2img, img2img, inpaint), sharing the loaded weights."""
        if task == "upscale":
            return self.pipe
        if task not in self._tasks:
            import diffusers

            base = self.pipe
            derived = getattr(diffusers, _AUTO[task]).from_pipe(base)
            derived.set_progress_bar_config(disable=True)
            if derived is not base and (self.config.get("cpu_offload") or self.config.get("sequential_offload")):
                self._place(derived, self._device or "cpu")
            self._tasks[task] = derived
        return self._tasks[task]

    def run_pipeline(self, group: tuple, kwargs: dict[str, Any]) -> Any:
        task = dict(group)["@task"]
        if task == "text2img" and self._refiner is not None:
            output = run_with_refiner(self.task_pipe(task), self._refiner, kwargs, denoising_split(self.config))
        else:
            output = self.task_pipe(task)(**kwargs)
        self._verdicts = getattr(output, "nsfw_content_detected", None)
        return output

    def text_limit(self) -> tuple[Any, int] | None:
        pipe = self.pipe
        if getattr(pipe, "tokenizer_3", None) is not None:  # SD3: the T5 encoder takes the long prompt
            return pipe.tokenizer_3, int(self.config.get("max_sequence_length") or 256)
        tok = getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)
        return (tok, int(tok.model_max_length)) if tok is not None else None

    def _defaults(self, task: str) -> dict[str, Any]:
        """What this task's pipeline would use when not told: recorded as the provenance."""
        params = inspect.signature(type(self.task_pipe(task)).__call__).parameters
        def default(name: str) -> Any:
            p = params.get(name)
            return None if p is None or p.default is inspect.Parameter.empty else p.default
        out = {"num_inference_steps": self.config.get("steps") or default("num_inference_steps"),
               "guidance_scale": self.config.get("guidance") if self.config.get("guidance") is not None
               else default("guidance_scale")}
        if task == "upscale":
            out["noise_level"] = self.config.get("noise_level") if self.config.get("noise_level") is not None \
                else default("noise_level")
        elif task != "text2img":
            out["strength"] = self.config.get("strength") if self.config.get("strength") is not None \
                else default("strength")
        if "max_sequence_length" in params and self.config.get("max_sequence_length"):
            out["max_sequence_length"] = int(self.config["max_sequence_length"])
        return out

    def _job_inputs(self, prompt: str, negative: str | None) -> dict[str, Any]:
        inputs: dict[str, Any] = {"prompt": prompt}
        if negative:
            inputs["negative_prompt"] = negative
        return inputs

    def _params(self, task: str, shared: dict[str, Any], prompt: str, cut: bool, negative: str | None) -> dict:
        params = {**self.base_params(), "task": task, "pipeline": type(self.task_pipe(task)).__name__,
                  "scheduler": type(self.pipe.scheduler).__name__, "steps": shared["num_inference_steps"],
                  "guidance": shared["guidance_scale"], "strength": shared.get("strength"),
                  "negative_prompt": negative, "prompt": prompt, "prompt_truncated": cut}
        if self.config.get("scheduler_opt"):
            params["scheduler_options"] = scheduler_options(type(self.pipe.scheduler), self.config["scheduler_opt"])
        if task == "text2img" and self._refiner is not None:
            params.update(refiner=self.config["refiner"], refiner_pipeline=type(self._refiner).__name__,
                          denoising_split=denoising_split(self.config))
        return params

    def _refuse_upscaler(self, capability: str) -> None:
        """An upscaler checkpoint that only showed what it is once downloaded: say what to run."""
        if type(self.pipe).__name__ in UPSCALER_CLASSES:
            self._pipeline_class = type(self.pipe).__name__
            raise ConfigError(f"serving diffusers cannot do {capability!r} with model {self.config['model']}",
                              self.capability_hint(capability) or "")

    def generate(self, requests: list[ImageRequest]) -> list[ImagesOrError]:
        self._refuse_upscaler(TEXT_TO_IMAGE)
        shared = self._defaults("text2img")
        jobs: list[Any] = []
        for r, req in enumerate(requests):
            try:
                prompt, cut, width, height = self.prepare(req.prompt, *self.sized_for_control(req))
                cond = self.conditioning(req, self.task_pipe("text2img"))
            except Exception as exc:  # noqa: BLE001 - this request fails alone
                jobs.append((r, exc))
                continue
            negative = req.negative_prompt or self.config.get("negative_prompt")
            group = (("@task", "text2img"), ("@negative", bool(negative)), *shared.items(),
                     ("height", height), ("width", width), *cond.group)
            params = {**self._params("text2img", shared, prompt, cut, negative), **cond.params}
            jobs += [Job(r, k, seed, group, {**self._job_inputs(prompt, negative), **cond.inputs}, params,
                         cond.shared) for k, seed in enumerate(req.seeds)]
        return self.run_jobs(jobs, len(requests), [len(r.seeds) for r in requests])

    def edit(self, requests: list[EditRequest]) -> list[ImagesOrError]:
        from PIL import Image

        self._refuse_upscaler(IMAGE_EDIT)
        jobs: list[Any] = []
        for r, req in enumerate(requests):
            task = "inpaint" if req.mask is not None else "img2img"
            try:
                self.check_prompt(req.prompt)
                if len(req.images) != 1:
                    raise RowError(f"this row has {len(req.images)} input images; {task} takes exactly one "
                                   "(for several reference images use flux-kontext with --combine)")
                prompt, cut = self.truncate(req.prompt)
                image = req.images[0]
                width, height = self.sized(req.width or self.config.get("width") or image.width,
                                           req.height or self.config.get("height") or image.height)
                cond = self.conditioning(req, self.task_pipe(task))
            except Exception as exc:  # noqa: BLE001 - this request fails alone
                jobs.append((r, exc))
                continue
            if image.size != (width, height):
                image = image.resize((width, height), Image.LANCZOS)
            inputs = {**self._job_inputs(prompt, req.negative_prompt or self.config.get("negative_prompt")),
                      "image": image, **cond.inputs}
            size: tuple = ()
            if task == "inpaint":
                inputs["mask_image"] = req.mask.convert("L").resize((width, height), Image.NEAREST)
                size = (("height", height), ("width", width))
            shared = self._defaults(task)
            negative = inputs.get("negative_prompt")
            # img2img takes its size from the image, so its group keys on the size without passing it.
            group = (("@task", task), ("@negative", bool(negative)), ("@size", (width, height)),
                     *shared.items(), *size, *cond.group)
            params = {**self._params(task, shared, prompt, cut, negative), "input_size": list(req.images[0].size),
                      **cond.params}
            jobs += [Job(r, k, seed, group, inputs, params, cond.shared) for k, seed in enumerate(req.seeds)]
        return self.run_jobs(jobs, len(requests), [len(r.seeds) for r in requests])
