"""The ``diffusers`` serving: any other diffusers text-to-image, image-to-image or inpainting
pipeline (SD 1.5, SDXL, SD3...) through the AutoPipeline classes."""

from __future__ import annotations

import inspect
from typing import Any

from pixmill.errors import ConfigError, RowError
from pixmill.options import Option
from pixmill.serving import IMAGE_EDIT, TEXT_TO_IMAGE, EditRequest, ImageRequest, ImagesOrError

from .base import DiffusersServing, Job
from .conditioning import ConditionedServing
from .options import COMMON_OPTIONS, CONTROLNET_OPTIONS, IP_ADAPTER_OPTIONS

_AUTO = {"text2img": "AutoPipelineForText2Image", "img2img": "AutoPipelineForImage2Image",
         "inpaint": "AutoPipelineForInpainting"}


class AutoDiffusersServing(ConditionedServing, DiffusersServing):
    """Any diffusers checkpoint, loaded once with its own pipeline class; text-to-image, image-to-
    image (``edit-images`` without a mask) and inpainting (with ``--mask-key``) share its weights
    through ``AutoPipeline*.from_pipe``. With ``--controlnet`` the loaded pipeline becomes its
    ControlNet variant (and so do the derived ones); ``--ip-adapter`` adds image prompts.
    Options: docs/servings/diffusers.md."""

    name = "diffusers"
    description = "any diffusers pipeline (SD 1.5, SDXL, SD3...): text-to-image, image-to-image, inpainting"
    capabilities = frozenset({TEXT_TO_IMAGE, IMAGE_EDIT})
    options = (
        *COMMON_OPTIONS,
        Option("negative_prompt", str, None, "what to steer away from (a row's own negative prompt wins)"),
        Option("strength", float, None, "image-to-image/inpainting: how much of the input to repaint, 0..1 "
               "(default: the pipeline's)"),
        Option("scheduler", str, None, "a diffusers scheduler class, e.g. EulerDiscreteScheduler, "
               "DPMSolverMultistepScheduler (default: the checkpoint's)"),
        *CONTROLNET_OPTIONS,
        *IP_ADAPTER_OPTIONS,
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._tasks: dict[str, Any] = {}

    def check(self) -> None:
        super().check()
        self._scheduler_class()
        self.check_conditioning()

    def _scheduler_class(self) -> Any:
        name = self.config.get("scheduler")
        if not name:
            return None
        import diffusers

        cls = getattr(diffusers, name, None)
        if cls is None or not name.endswith("Scheduler"):
            raise ConfigError(f"--scheduler {name}: diffusers has no such scheduler",
                              "use a class name such as EulerDiscreteScheduler or DPMSolverMultistepScheduler")
        return cls

    @property
    def denoiser(self) -> str:  # type: ignore[override]
        return "unet" if getattr(self._pipe, "unet", None) is not None else "transformer"

    def load_pipeline(self, where: str, **kwargs: Any) -> Any:
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(where, **kwargs)
        if self.controlnets:
            # The ControlNet variant of the checkpoint's pipeline; the task pipelines derived from it
            # (image-to-image, inpainting) are ControlNet pipelines too.
            nets = self.controlnets.load(torch_dtype=kwargs["torch_dtype"])
            pipe = AutoPipelineForText2Image.from_pipe(pipe, controlnet=nets)
        return pipe

    def configure(self, pipe: Any) -> None:
        cls = self._scheduler_class()
        if cls is not None:
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
        self.ip_adapter.load_into(pipe, flux=type(pipe).__name__.startswith("Flux"))

    def unload(self) -> None:
        self._tasks.clear()
        super().unload()

    def task_pipe(self, task: str) -> Any:
        """The pipeline for ``task`` (text2img, img2img, inpaint), sharing the loaded weights."""
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
        return self.task_pipe(dict(group)["@task"])(**kwargs)

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
        if task != "text2img":
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
        return {**self.base_params(), "task": task, "pipeline": type(self.task_pipe(task)).__name__,
                "scheduler": type(self.pipe.scheduler).__name__, "steps": shared["num_inference_steps"],
                "guidance": shared["guidance_scale"], "strength": shared.get("strength"),
                "negative_prompt": negative, "prompt": prompt, "prompt_truncated": cut}

    def generate(self, requests: list[ImageRequest]) -> list[ImagesOrError]:
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
