"""What every diffusers serving shares: loading, devices, dtype, memory options, compile, LoRA,
per-image seeds, size rounding, prompt truncation, batching and provenance.

A subclass says how to load its pipeline and how to turn requests into :class:`Job` s (one per
image) and a group of jobs into pipeline keyword arguments; this class batches the jobs, runs the
pipeline and wraps every image with its provenance.
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pixmill.errors import ConfigError, RowError
from pixmill.serving import GeneratedImage, ImagesOrError, Serving

from .model_path import resolve_model
from .options import COMMON_OPTIONS

log = logging.getLogger("pixmill.diffusers")

_TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "auto": "bfloat16"}


@dataclass
class Job:
    """One image to make: where its result goes, its seed, and what it shares with other jobs.

    Jobs with the same ``group`` run in one pipeline call; ``inputs`` holds per-image pipeline
    arguments (prompt, image, mask...) that become lists in that call.
    """

    request: int
    index: int
    seed: int
    group: tuple
    inputs: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    # Call arguments the same for every job of a group (the group keys on them): passed once.
    shared: dict[str, Any] = field(default_factory=dict)


def parse_devices(spec: str | None) -> list[str]:
    """``None``/``"auto"``: every visible GPU, else the CPU; ``"0,1"``, ``"cuda:1"``, ``"cpu"``, ``"cpu,cpu"``."""
    if not spec or spec.strip() == "auto":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if part.isdigit():
            out.append(f"cuda:{part}")
        elif part == "cuda":
            out.append("cuda:0")
        elif part in ("cpu", "mps") or (part.startswith("cuda:") and part[5:].isdigit()):
            out.append(part)
        elif part:
            raise ConfigError(f"--devices: cannot read {part!r}", "write GPU indexes (0,1), cuda:N, or cpu")
    return out


def quiet_progress_bars() -> None:
    """Turn off the loading/saving bars of diffusers and transformers: pixmill shows its own."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


def round_size(value: int, multiple: int) -> int:
    """The nearest size the model accepts: a multiple of ``multiple``, at least one multiple."""
    return max(multiple, int(value / multiple + 0.5) * multiple)  # halves round up, not to even


class DiffusersServing(Serving):
    """Base class of the local diffusers servings (not registered itself)."""

    options: ClassVar[tuple] = COMMON_OPTIONS
    denoiser: ClassVar[str] = "transformer"  # the module `compile` and LoRA apply to

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._device: str | None = None
        self._pipe: Any = None
        self._dtype_name = ""
        self._warned: set[str] = set()
        self._auto_per_call: int | None = None

    # -- setup ---------------------------------------------------------------------------------
    def check(self) -> None:
        """Validate the model location (and the scheduler/LoRA names) without loading weights."""
        resolve_model(self.config, download=False)
        if self.config.get("devices"):
            parse_devices(self.config["devices"])  # a malformed --devices fails here, not in a worker
        lora = self.config.get("lora")
        if lora and (lora.startswith((".", "/", "~")) or lora.endswith(".safetensors")):
            from pathlib import Path

            if not Path(lora).expanduser().exists():
                raise ConfigError(f"LoRA weights {lora} do not exist", "check --lora (a folder, file or hub id)")

    def devices(self) -> list[str]:
        return parse_devices(self.config.get("devices"))

    def images_per_call(self) -> int | None:
        """``images_per_call`` when given, else the rule of :mod:`pixmill_diffusers.batching` for this
        model, size and device (the same in the main process, which cuts the batches, and in the
        worker that runs them)."""
        if self.config.get("images_per_call"):
            return int(self.config["images_per_call"])
        if self._auto_per_call is None:
            self._auto_per_call = self._pick_images_per_call()
        return self._auto_per_call

    def default_pixels(self) -> int:
        """Pixels of one image when width/height are not set (the models' usual 1024x1024)."""
        return 1024 * 1024

    def _pick_images_per_call(self) -> int:
        from .batching import gpu_memory, images_per_call, weights_size

        device = self._device or self.devices()[0]
        width, height = self.config.get("width"), self.config.get("height")
        pixels = int(width) * int(height) if width and height else self.default_pixels()
        try:
            weights = weights_size(resolve_model(self.config, download=False)[0])
        except ConfigError:
            weights = None
        memory = gpu_memory(device) if device.startswith("cuda") else None
        offload = bool(self.config.get("cpu_offload") or self.config.get("sequential_offload"))
        n = images_per_call(device, pixels, weights, memory, offload)
        log.info("%s: %d image(s) per pipeline call on %s (set --images-per-call to choose)", self.name, n, device)
        return n

    def replica_resources(self) -> dict[str, float] | None:
        # From --devices alone (no torch import: the Ray driver may have no GPU): a replica takes
        # one GPU unless the serving was told to run on the CPU.
        spec = [d.strip() for d in (self.config.get("devices") or "").split(",") if d.strip()]
        on_cpu = bool(spec) and all(d == "cpu" for d in spec)
        return {"gpus": 0.0 if on_cpu else 1.0, "cpus": 1.0}

    def images_per_prompt(self) -> int | None:
        return self.config.get("num_images_per_prompt")

    def use_device(self, device: str) -> None:
        self._device = device

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def load(self) -> None:
        import torch

        device = self._device or self.devices()[0]
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device} asked for, but torch sees no CUDA GPU",
                              "pass --devices cpu, or install a CUDA build of torch")
        if device == "cpu" and not self.config.get("devices"):
            log.warning("no CUDA GPU found: %s runs on the CPU, which is very slow for real models", self.name)
        dtype_name = _TORCH_DTYPES[self.config["dtype"]]
        if device == "cpu" and dtype_name != "float32":
            # bf16/fp16 kernels are missing or very slow on CPUs: compute in fp32 there.
            log.warning("dtype %s on the CPU: using fp32 instead", self.config["dtype"])
            dtype_name = "float32"
        self._dtype_name = dtype_name
        where, kwargs = resolve_model(self.config, download=True)
        quiet_progress_bars()
        from transformers.utils import logging as tlog

        verbosity = tlog.get_verbosity()
        tlog.set_verbosity_error()  # loading notes (e.g. "requires torchvision") are noise to users
        try:
            with warnings.catch_warnings():
                # diffusers 0.42 renamed torch_dtype to dtype; older releases know only torch_dtype.
                warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                pipe = self.load_pipeline(where, torch_dtype=getattr(torch, dtype_name), **kwargs)
        finally:
            tlog.set_verbosity(verbosity)
        pipe.set_progress_bar_config(disable=True)  # pixmill shows its own progress
        self._pipe = pipe
        self.configure(pipe)
        self._place(pipe, device)
        if self.config.get("lora"):
            self._load_lora(pipe)
        self.speed_up(pipe, device)
        if self.config.get("compile"):
            self._compile(pipe)
        self._device = device

    def load_pipeline(self, where: str, **kwargs: Any) -> Any:
        """Instantiate the pipeline from a folder or hub id (subclasses)."""
        raise NotImplementedError

    def configure(self, pipe: Any) -> None:
        """Adjust a freshly loaded pipeline (scheduler...) before it moves to its device."""

    def speed_up(self, pipe: Any, device: str) -> None:
        """Apply speed options to a placed pipeline, before it is compiled (subclasses)."""

    def _place(self, pipe: Any, device: str) -> None:
        cfg = self.config
        if device == "cpu":
            if cfg.get("cpu_offload") or cfg.get("sequential_offload"):
                log.warning("cpu_offload/sequential_offload need a GPU: ignored on the CPU")
            pipe.to("cpu")
        elif cfg.get("sequential_offload"):
            pipe.enable_sequential_cpu_offload(device=device)
        elif cfg.get("cpu_offload"):
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if cfg.get("vae_tiling"):
            pipe.vae.enable_tiling()
        if cfg.get("vae_slicing"):
            pipe.vae.enable_slicing()
        if cfg.get("attention_slicing"):
            pipe.enable_attention_slicing()

    def _load_lora(self, pipe: Any) -> None:
        from pathlib import Path

        lora = self.config["lora"]
        kwargs: dict[str, Any] = {"adapter_name": "pixmill"}
        path = Path(lora).expanduser()
        if path.is_file():
            lora, kwargs["weight_name"] = str(path.parent), path.name
        elif self.config.get("lora_weight_name"):
            kwargs["weight_name"] = self.config["lora_weight_name"]
        pipe.load_lora_weights(str(lora), **kwargs)
        pipe.set_adapters(["pixmill"], adapter_weights=[float(self.config["lora_scale"])])

    def _compile(self, pipe: Any) -> None:
        import os

        module = getattr(pipe, self.denoiser)
        backend = os.environ.get("PIXMILL_COMPILE_BACKEND", "inductor")
        options: dict[str, Any] = {"backend": backend}
        if self.config.get("compile_mode") and backend == "inductor":
            options["mode"] = self.config["compile_mode"]
        if getattr(module, "_repeated_blocks", None):
            # Regional compilation: one compile of the repeated block, reused by all of them;
            # minutes faster to warm up than compiling the whole transformer.
            module.compile_repeated_blocks(fullgraph=True, **options)
        else:
            module.compile(**options)
        log.info("%s: compiled the %s (backend %s); the first batch includes the compile time",
                 self.name, self.denoiser, backend)

    def unload(self) -> None:
        if self._pipe is None:
            return
        self._pipe = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    @property
    def pipe(self) -> Any:
        if self._pipe is None:
            self.load()
        return self._pipe

    # -- prompts, sizes, provenance ----------------------------------------------------------
    def text_limit(self) -> tuple[Any, int] | None:
        """The tokenizer whose limit a prompt must fit, and that limit (subclasses)."""
        return None

    def truncate(self, prompt: str) -> tuple[str, bool]:
        """The prompt the text encoder actually sees, and whether it was cut."""
        found = self.text_limit()
        if found is None:
            return prompt, False
        tokenizer, limit = found
        ids = tokenizer(prompt, add_special_tokens=False, truncation=False).input_ids
        room = max(1, limit - tokenizer.num_special_tokens_to_add())
        if len(ids) <= room:
            return prompt, False
        cut = tokenizer.decode(ids[:room], skip_special_tokens=True).strip()
        log.warning("prompt of %d tokens is longer than the %d the text encoder takes: truncated to %r",
                    len(ids), room, cut[:80] + ("..." if len(cut) > 80 else ""))
        return cut, True

    def size_multiple(self) -> int:
        return int(self.pipe.vae_scale_factor)

    def sized(self, width: int | None, height: int | None) -> tuple[int | None, int | None]:
        """Requested size (request, else option), rounded to what the model accepts."""
        width = width or self.config.get("width")
        height = height or self.config.get("height")
        m = self.size_multiple()
        out = []
        for what, value in (("width", width), ("height", height)):
            rounded = round_size(int(value), m) if value else None
            if value and rounded != value:
                self.warn_once(f"{what}={value}", "%s %d is not a multiple of %d: using %d", what, value, m, rounded)
            out.append(rounded)
        return out[0], out[1]

    def base_params(self) -> dict[str, Any]:
        """Provenance every image of this serving carries."""
        cfg = self.config
        params = {"serving": self.name, "model": cfg["model"], "revision": cfg.get("revision"),
                  "dtype": self._dtype_name}
        if cfg.get("lora"):
            params.update(lora=cfg["lora"], lora_scale=cfg["lora_scale"])
        return params

    def prepare(self, prompt: str, width: int | None, height: int | None) -> tuple[str, bool, int, int]:
        """Check and size one text-to-image request: (prompt as sent, truncated?, width, height).
        Raises for a request that must fail alone (an empty prompt, say)."""
        self.check_prompt(prompt)
        sent, cut = self.truncate(prompt)
        width, height = self.sized(width, height)
        return sent, cut, width, height

    def check_prompt(self, prompt: str) -> None:
        if not prompt or not prompt.strip():
            raise RowError("empty prompt: give every row a non-empty prompt")

    # -- running -------------------------------------------------------------------------------
    def run_jobs(self, jobs: list[Job | tuple[int, Exception]], n_requests: int,
                 per_request: list[int]) -> list[ImagesOrError]:
        """Run the jobs in groups of at most :meth:`images_per_call` images and collect one entry per request.

        ``jobs`` may hold ``(request, exception)`` pairs (a request that failed validation): that
        request gets the exception, the others their images in index order.
        """
        failed: dict[int, Exception] = {}
        groups: dict[tuple, list[Job]] = defaultdict(list)
        for job in jobs:
            if isinstance(job, tuple):  # (request, exception)
                failed.setdefault(job[0], job[1])
            else:
                groups[job.group].append(job)
        images: list[list[GeneratedImage | None]] = [[None] * n for n in per_request]
        limit = self.images_per_call() or 0
        for group, members in groups.items():
            members = [j for j in members if j.request not in failed]
            step = limit or len(members) or 1
            for start in range(0, len(members), step):
                chunk = members[start:start + step]
                for job, image in zip(chunk, self._call(group, chunk), strict=True):
                    params = {**job.params, "seed": job.seed, "width": image.width, "height": image.height}
                    images[job.request][job.index] = GeneratedImage(image=image, params=params)
        return [failed[i] if i in failed else list(images[i]) for i in range(n_requests)]  # type: ignore[misc]

    def _call(self, group: tuple, chunk: list[Job]) -> list[Any]:
        import torch

        kwargs = self.call_kwargs(group)
        for name in chunk[0].inputs:
            kwargs[name] = [job.inputs[name] for job in chunk]
        kwargs.update(chunk[0].shared)
        kwargs = self.prepare_call(group, kwargs)
        # One CPU generator per image: the same seed gives the same noise on any device and in
        # any batch, so batching never changes the pixels of an image.
        kwargs["generator"] = [torch.Generator("cpu").manual_seed(job.seed) for job in chunk]
        try:
            with torch.inference_mode():
                return list(self.run_pipeline(group, kwargs).images)
        except torch.OutOfMemoryError:
            # Free what the failed call held, so the rows retried one by one have a chance.
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise

    def prepare_call(self, group: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Last touch to a call's arguments once the jobs' inputs are gathered (subclasses)."""
        return kwargs

    def run_pipeline(self, group: tuple, kwargs: dict[str, Any]) -> Any:
        return self.pipe(**kwargs)

    def call_kwargs(self, group: tuple) -> dict[str, Any]:
        """Pipeline keyword arguments shared by a group: its items, except the ``@`` ones that
        only keep unlike jobs apart (the task of the diffusers serving, say)."""
        return {k: v for k, v in group if not k.startswith("@")}
