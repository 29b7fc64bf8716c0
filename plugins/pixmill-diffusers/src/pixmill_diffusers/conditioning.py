"""What a diffusers serving with ControlNets and an IP-Adapter adds to each request: the control
and reference images as pipeline inputs, the groups that keep unlike calls apart, and provenance.

Mixed into the ``flux`` and ``diffusers`` servings (before :class:`DiffusersServing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixmill.errors import RowError

from .controlnet import ControlNets
from .ip_adapter import IPAdapter
from .model_path import pipeline_class_name

CONTROL_GROUP = "@control"


@dataclass
class Conditioning:
    """One request's conditioning: per-image pipeline inputs, group items, shared call arguments
    (the same for every image of a group) and provenance."""

    inputs: dict[str, Any] = field(default_factory=dict)
    group: tuple = ()
    shared: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


class ConditionedServing:
    """Mixin: ``--controlnet`` and ``--ip-adapter`` for a :class:`DiffusersServing` subclass."""

    config: dict[str, Any]
    name: str

    def __init__(self, **options: Any):
        super().__init__(**options)  # type: ignore[call-arg]
        self.controlnets = ControlNets(self.config)
        self.ip_adapter = IPAdapter(self.config)

    def control_image_count(self) -> int:
        return len(self.controlnets)

    def uses_reference_images(self) -> bool:
        return self.ip_adapter.enabled

    def check_conditioning(self, flux: bool | None = None) -> None:
        """Validate ControlNets and IP-Adapter before any work. ``flux``: whether the base model is
        FLUX.1 (``None``: read it from the model's model_index.json when that is at hand)."""
        if flux is None:
            found = pipeline_class_name(self.config)
            flux = None if found is None else found.startswith("Flux")
        self.controlnets.check(self.name, flux)
        self.ip_adapter.check()

    def sized_for_control(self, req: Any) -> tuple[int | None, int | None]:
        """The size to ask for: the request's, else the options', else the control image's."""
        width = req.width or self.config.get("width")
        height = req.height or self.config.get("height")
        if self.controlnets and req.control_images:
            width = width or req.control_images[0].width
            height = height or req.control_images[0].height
        return width, height

    def conditioning(self, req: Any, pipe: Any) -> Conditioning:
        """The conditioning of one request for the pipeline ``pipe`` that will run it."""
        out = Conditioning()
        if self.controlnets and not req.control_images:
            raise RowError("no control image: this serving runs a ControlNet (give the row one with --control-key)")
        if self.ip_adapter.enabled and not req.reference_images:
            raise RowError("no reference image: this serving has an IP-Adapter (give the row one with --reference-key)")
        if self.controlnets:
            name = self.controlnets.kwarg(pipe)
            out.inputs[name] = self.controlnets.images_for(req.control_images)
            out.group += ((CONTROL_GROUP, name),)
            out.params.update(self.controlnets.params())
        if self.ip_adapter.enabled:
            item, shared = self.ip_adapter.for_request(req.reference_images)
            out.group += (item,)
            out.shared.update(shared)
            out.params.update(self.ip_adapter.params())
        return out

    def prepare_call(self, group: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        name = dict(group).get(CONTROL_GROUP)
        if name:
            kwargs = self.controlnets.arrange(kwargs, name)
        return super().prepare_call(group, kwargs)  # type: ignore[misc]
