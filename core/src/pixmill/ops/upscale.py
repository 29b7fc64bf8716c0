"""The ``upscale-images`` operator: make a row's images larger with any ``upscale`` serving.

Servings: ``diffusers`` with the SD x4 upscaler (prompt-guided, with a noise level) and ``esrgan``
(Real-ESRGAN / ESRGAN-family GAN upscalers, tiled for large images), both in pixmill-diffusers.

Output shape:

- ``<output_key>`` (default: the field the images came from, so the next step sees the larger
  images with no key options): the upscaled image path, or a list when the field held a list.
- ``<output_key>_meta``: the upscaler's provenance for each image (serving, model, scale, seed,
  size...) with ``source_image`` (the path it upscaled) and ``source`` (that image's own
  provenance, when the row had it), so the chain that made a picture stays auditable.
"""

from __future__ import annotations

from typing import Any

from .. import fields
from ..context import StepContext
from ..image_files import open_row_image
from ..operator import Failed, Operator, Outcome
from ..options import Option
from ..rows import ID_KEY, get_field, image_list, prompt_text
from ..serving import UPSCALE, UpscaleRequest
from .images import save_image


class UpscaleImages(Operator):
    """Upscale every image of a row (one request per image, each with its own seed).

    ``scale`` asks for a factor; a serving whose model has a fixed factor (x4) resizes its output
    to the asked one, so the result is always ``scale`` times the input. The row's prompt (by the
    field rule, or ``prompt_key``) guides servings that take one.
    """

    name = "upscale-images"
    description = "upscale images with any upscale serving (SD x4 upscaler, Real-ESRGAN...); writes PNGs"
    capability = UPSCALE
    default_batch_size = 1
    options = (
        Option("image_key", str, None, "field holding the image path (or list) to upscale "
               "(default: the row's newest images: edited_images, else images, else image)"),
        Option("output_key", str, None, "field to write the upscaled path (or list) to; provenance goes to "
               "<output_key>_meta (default: the image field itself)"),
        Option("scale", float, None, "upscaling factor, e.g. 2 or 4 (default: the model's own factor)"),
        Option("prompt_key", str, None, "field holding the prompt that guides a prompt-guided upscaler "
               "(default: prompt, else conversations, when the row has one)"),
    )

    def fields_read(self) -> list[tuple[str, ...]]:
        key = self.config["image_key"]
        return [(key,) if key else fields.RESULT_IMAGE_FIELDS]

    @property
    def batch_size(self) -> int:
        """Rows per batch: ``--batch-size``, else the serving's images per call, else one row."""
        if self.config.get("batch_size"):
            return int(self.config["batch_size"])
        per_call = self.serving.images_per_call() if self.serving is not None else None
        return max(1, int(per_call or self.default_batch_size))

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        requests: list[UpscaleRequest] = []
        plans: list[Any] = []
        for row in rows:
            try:
                plans.append(self._plan(row, ctx, requests))
            except ValueError as exc:
                plans.append(Failed(str(exc)))
        results = self.serving.upscale(requests) if requests else []
        return self._finish(rows, plans, results, ctx)

    def _plan(self, row: dict, ctx: StepContext, requests: list[UpscaleRequest]) -> tuple:
        """Append this row's requests; return (image field, its value, first request, count)."""
        key = self.config["image_key"] or fields.result_image_field(row)
        if key is None:
            raise ValueError("row has no images to upscale (no edited_images, images or image field; "
                             "set --image-key)")
        value = get_field(row, key)
        paths = image_list(value)
        if not paths:
            raise ValueError(f"field {key!r} holds no image (set --image-key to the field with the images)")
        images = [open_row_image(ctx, p, key, row=row) for p in paths]
        prompt = self._prompt(row)
        rid = str(row[ID_KEY])
        first = len(requests)
        for index, image in enumerate(images):
            requests.append(UpscaleRequest(image=image, seed=ctx.seed_for(rid, index),
                                           scale=self.config["scale"], prompt=prompt))
        return key, value, paths, first

    def _prompt(self, row: dict) -> str | None:
        key = self.config["prompt_key"] or fields.first_present(row, fields.PROMPT_FIELDS)
        if key is None:
            return None
        text = prompt_text(get_field(row, key)).strip()
        return text or None

    def _finish(self, rows: list[dict], plans: list[Any], results: list[Any], ctx: StepContext) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for row, plan in zip(rows, plans, strict=True):
            if isinstance(plan, Failed):
                outcomes.append(plan)
                continue
            key, value, sources, first = plan
            row_results = results[first:first + len(sources)]
            error = next((r for r in row_results if isinstance(r, Exception)), None)
            if error is not None:
                outcomes.append(Failed(str(error).strip() or type(error).__name__))
                continue
            out_key = self.config["output_key"] or key
            old_meta = row.get(fields.meta_field(key))
            paths, metas = [], []
            for index, (result, source) in enumerate(zip(row_results, sources, strict=True)):
                image = result[0]
                absolute, relative = ctx.image_path(str(row[ID_KEY]), index, image.suffix or ".png")
                save_image(image, absolute)
                paths.append(relative)
                meta = {**image.params, "index": index, "source_image": source}
                source_meta = old_meta[index] if isinstance(old_meta, list) and index < len(old_meta) else old_meta
                if isinstance(source_meta, dict):
                    meta["source"] = source_meta
                metas.append(meta)
            many = isinstance(value, list) or len(paths) > 1
            outcomes.append({**row, out_key: paths if many else paths[0],
                             fields.meta_field(out_key): metas if many else metas[0]})
        return outcomes


UPSCALE_OPERATORS = [UpscaleImages]
