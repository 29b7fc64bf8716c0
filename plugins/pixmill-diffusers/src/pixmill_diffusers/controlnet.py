"""ControlNets for the diffusers servings: which ones, checked before any work, loaded with the
pipeline, and each request's control images arranged the way the pipeline call takes them.

One ControlNet takes one control image per image made; several (Multi-ControlNet) take one each,
in the order of ``--controlnet``, or share one image. The control image sets the output size when
neither the request nor ``--width``/``--height`` does.
"""

from __future__ import annotations

import inspect
from typing import Any

from pixmill.errors import ConfigError

from .model_path import component_class_name

FLUX_CONTROLNETS = ("FluxControlNetModel",)
# Which base models each ControlNet class fits (for error messages).
FAMILIES = {"ControlNetModel": "Stable Diffusion 1.5/2.x and SDXL", "ControlNetUnionModel": "SDXL",
            "SD3ControlNetModel": "Stable Diffusion 3", "FluxControlNetModel": "FLUX.1"}
FLAG = "--controlnet"


class ControlNets:
    """The ``--controlnet`` models of one serving and their ``--controlnet-scale``."""

    def __init__(self, config: dict[str, Any]):
        self.models: list[str] = list(config.get("controlnet") or [])
        self.cache_dir = config.get("cache_dir")
        self._raw_scales = config.get("controlnet_scale")

    def __len__(self) -> int:
        return len(self.models)

    @property
    def scales(self) -> list[float]:
        """One strength per ControlNet (raises ConfigError for values that do not fit)."""
        raw = self._raw_scales
        try:
            values = [float(v) for v in raw or []]
        except ValueError:
            raise ConfigError(f"--controlnet-scale {','.join(raw or [])}: not numbers",
                              "give numbers, one for all ControlNets or one per --controlnet") from None
        n = len(self.models)
        if len(values) > 1 and len(values) != n:
            raise ConfigError(f"--controlnet-scale has {len(values)} values for {n} ControlNets",
                              "give one value for all, or one per --controlnet")
        return (values or [1.0]) * (n if len(values) <= 1 else 1)

    def check(self, serving: str, flux: bool | None) -> list[str]:
        """Validate each ControlNet without loading weights: it exists, it is a ControlNet, and it
        fits the base model (``flux``: whether the base is FLUX; ``None``: unknown yet)."""
        self.scales  # noqa: B018 - validates --controlnet-scale
        classes = []
        for model in self.models:
            cls = component_class_name(model, "ControlNet", FLAG, self.cache_dir)
            if cls is None:  # a hub repo not downloaded yet: checked when the worker loads it
                continue
            if "ControlNet" not in cls:
                raise ConfigError(f"{FLAG} {model} is a {cls}, not a ControlNet",
                                  "pass a ControlNet folder or hub id (its config.json names a *ControlNetModel)")
            if flux is True and cls not in FLUX_CONTROLNETS:
                family = FAMILIES.get(cls, "another model")
                raise ConfigError(f"{FLAG} {model} is a {cls}, a ControlNet for {family}, and --model is a FLUX.1 "
                                  f"pipeline ({serving} serving)",
                                  f"use --serving diffusers with a {family} --model, or a FLUX.1 ControlNet")
            if flux is False and cls in FLUX_CONTROLNETS:
                raise ConfigError(f"{FLAG} {model} is a FLUX.1 ControlNet and --model is not a FLUX pipeline",
                                  "use --serving flux with a FLUX.1 --model, or a ControlNet for this model")
            classes.append(cls)
        return classes

    def load(self, **kwargs: Any) -> Any:
        """The ControlNet model (one) or list of models (several), loaded with ``kwargs``
        (``torch_dtype``...); the pipeline wraps a list into its Multi-ControlNet."""
        import diffusers

        nets = []
        for model in self.models:
            cls = component_class_name(model, "ControlNet", FLAG, self.cache_dir, download=True)
            loader = getattr(diffusers, cls or "", None)
            if loader is None or not hasattr(loader, "from_pretrained"):
                raise ConfigError(f"{FLAG} {model}: diffusers has no model class {cls!r}",
                                  "pass a diffusers ControlNet (its config.json names a *ControlNetModel)")
            extra = {"cache_dir": self.cache_dir} if self.cache_dir else {}
            nets.append(loader.from_pretrained(model, **kwargs, **extra))
        return nets[0] if len(nets) == 1 else nets

    @staticmethod
    def kwarg(pipe: Any) -> str:
        """The pipeline argument that takes the control image: ``control_image``, or ``image`` in
        the SD/SDXL text-to-image ControlNet pipelines (where no init image exists)."""
        params = inspect.signature(type(pipe).__call__).parameters
        return "control_image" if "control_image" in params else "image"

    def images_for(self, images: list[Any]) -> list[Any]:
        """One control image per ControlNet: the row's own, or its one image for every ControlNet."""
        return images * len(self.models) if len(images) == 1 else list(images)

    def arrange(self, kwargs: dict[str, Any], name: str) -> dict[str, Any]:
        """Turn the per-image lists of control images into the call's form: a list per image for one
        ControlNet, a list per ControlNet (each a list per image) for several; add the scales."""
        per_image = kwargs[name]
        if len(self.models) == 1:
            kwargs[name] = [images[0] for images in per_image]
            kwargs["controlnet_conditioning_scale"] = self.scales[0]
        else:
            kwargs[name] = [list(images) for images in zip(*per_image, strict=True)]
            kwargs["controlnet_conditioning_scale"] = list(self.scales)
        return kwargs

    def params(self) -> dict[str, Any]:
        """Provenance: the ControlNet(s) and their scale(s) (the operator adds the control image)."""
        one = len(self.models) == 1
        return {"controlnet": self.models[0] if one else list(self.models),
                "controlnet_scale": self.scales[0] if one else list(self.scales)}
