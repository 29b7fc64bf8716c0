"""The ``flux-kontext`` serving: image editing with diffusers' FluxKontextPipeline
(FLUX.1-Kontext-dev). The output keeps the input's aspect ratio at the requested pixel budget."""

from __future__ import annotations

import math
from typing import Any

from pixmill.errors import RowError
from pixmill.options import Option
from pixmill.serving import IMAGE_EDIT, EditRequest, ImagesOrError

from .base import Job, round_size
from .flux import FluxServing
from .options import COMMON_OPTIONS, SPEED_OPTIONS

COMBINE = ("side-by-side", "stacked", "first")
DEFAULT_AREA = 1024 * 1024


def combine_images(images: list[Any], how: str | None) -> Any:
    """One conditioning image from a row's reference images (Kontext takes one)."""
    from PIL import Image

    if len(images) == 1:
        return images[0]
    if how is None:
        raise RowError(f"this row has {len(images)} reference images and flux-kontext takes one: set --combine "
                       "side-by-side (or stacked, or first) to say how to join them")
    if how == "first":
        return images[0]
    if how == "side-by-side":
        h = images[0].height
        parts = [im.resize((max(1, round(im.width * h / im.height)), h), Image.LANCZOS) for im in images]
        canvas = Image.new("RGB", (sum(p.width for p in parts), h))
        x = 0
        for p in parts:
            canvas.paste(p, (x, 0))
            x += p.width
        return canvas
    w = images[0].width  # stacked: top to bottom at the first image's width
    parts = [im.resize((w, max(1, round(im.height * w / im.width))), Image.LANCZOS) for im in images]
    canvas = Image.new("RGB", (w, sum(p.height for p in parts)))
    y = 0
    for p in parts:
        canvas.paste(p, (0, y))
        y += p.height
    return canvas


def fit_area(width: int, height: int, area: int, multiple: int) -> tuple[int, int]:
    """The size with the aspect ratio of ``width x height`` and about ``area`` pixels, in multiples."""
    aspect = width / height
    return (round_size(round(math.sqrt(area * aspect)), multiple),
            round_size(round(math.sqrt(area / aspect)), multiple))


class FluxKontextServing(FluxServing):
    """FLUX.1 Kontext image editing. The reference image is resized to the output size: the input's
    aspect ratio at the pixel budget (``max_area``, else ``width`` x ``height``, else 1024x1024).
    Rows with several reference images need ``combine``. Options: docs/servings/flux-kontext.md."""

    name = "flux-kontext"
    description = "FLUX.1 Kontext image editing with diffusers' FluxKontextPipeline; keeps the input's aspect ratio"
    capabilities = frozenset({IMAGE_EDIT})
    pipeline_class = "FluxKontextPipeline"
    default_guidance = 2.5
    options = (
        *COMMON_OPTIONS,
        *SPEED_OPTIONS,
        Option("max_area", int, None, "pixel budget of the output (default: width x height if both given, "
               "else 1024x1024)"),
        Option("combine", str, None, "how to join several reference images into the one Kontext takes "
               "(default: such rows fail)", choices=COMBINE),
    )

    def default_pixels(self) -> int:
        return int(self.config.get("max_area") or super().default_pixels())

    def budget(self, req: EditRequest) -> int:
        if self.config.get("max_area"):
            return int(self.config["max_area"])
        w, h = req.width or self.config.get("width"), req.height or self.config.get("height")
        return int(w) * int(h) if w and h else DEFAULT_AREA

    def edit(self, requests: list[EditRequest]) -> list[ImagesOrError]:
        from PIL import Image

        shared, base = self.shared()
        jobs: list[Any] = []
        for r, req in enumerate(requests):
            try:
                self.check_prompt(req.prompt)
                if not req.images:
                    raise RowError("no reference image: flux-kontext edits an image")
                prompt, cut = self.truncate(req.prompt)
                cond = combine_images(req.images, self.config.get("combine"))
                width, height = fit_area(cond.width, cond.height, self.budget(req), self.size_multiple())
            except Exception as exc:  # noqa: BLE001 - this request fails alone
                jobs.append((r, exc))
                continue
            if req.mask is not None:
                self.warn_once("mask", "flux-kontext takes no mask: masks are ignored")
            input_size = [cond.width, cond.height]
            if cond.size != (width, height):
                cond = cond.resize((width, height), Image.LANCZOS)
            # _auto_resize=False: we chose the size (the input's aspect ratio at the budget), so the
            # pipeline must not snap it to its list of preferred resolutions.
            group = (*shared, ("height", height), ("width", width), ("max_area", width * height),
                     ("_auto_resize", False))
            params = {**base, "prompt": prompt, "prompt_truncated": cut, "input_size": input_size,
                      "reference_images": len(req.images), "combine": self.config.get("combine")}
            jobs += [Job(r, k, seed, group, {"prompt": prompt, "image": cond}, params)
                     for k, seed in enumerate(req.seeds)]
        return self.run_jobs(jobs, len(requests), [len(r.seeds) for r in requests])
