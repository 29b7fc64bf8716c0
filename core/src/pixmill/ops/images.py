"""Image operators: ``generate-images`` (text-to-image) and ``edit-images`` (image editing).

Both work with any serving of the matching capability (local diffusers pipelines, HTTP APIs). They
turn rows into requests, call the serving once per batch, and write every image the serving returns
as a file in the step's folder, named from the row id and the image index (never from the prompt).

Output shape, the same for both operators:

- ``<output_key>``: the run-relative path of the image, or a list of paths when the row asked for
  several images (``--images-per-prompt`` above 1, or a prompt field holding several prompts) or
  the field already held a list (DataFlow-MM's ``"images": [""]`` placeholders stay lists).
  Lists are ordered prompt by prompt, then image by image.
- ``<output_key>_meta``: the provenance of each image, mirroring the shape of ``<output_key>`` (a
  dict, or a list of dicts): the serving's record (serving, model, revision, seed, width, height,
  steps, guidance, dtype, the exact prompt sent, whether it was truncated...) plus ``index``, and
  ``control_image`` / ``reference_images`` (the paths used) when the serving took them.

Conditioning images: a serving that runs ControlNets (``Serving.control_image_count()``) gets each
row's control image(s) from ``--control-key`` (default: the ``control_image`` field), and one with
an IP-Adapter (``Serving.uses_reference_images()``) gets the row's reference image(s) from
``--reference-key`` (default: ``reference_images``). Row fields are the operator's business, the
models that use them the serving's.

A prompt field may hold one prompt (a string, or a DataFlow-MM ``conversations`` list with one user
turn) or several (a list of strings, or several user turns): each prompt gets its own images, so a
row can make the per-subject condition images that a later multi-image edit composes. A row without
the default ``prompt`` field but with a DataFlow-MM ``conversations`` list uses the conversation.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from .. import fields
from ..context import StepContext
from ..errors import ConfigError, failure_reason
from ..fields import (
    EDITED_IMAGES,
    GENERATED_IMAGES,
    INSTRUCTION_FIELDS,
    PROMPT_FIELDS,
    SOURCE_IMAGES,
    first_present,
    meta_field,
)
from ..files import write_atomic
from ..gallery.thumbs import write_sidecar
from ..image_files import open_row_image
from ..operator import Failed, Operator, Outcome
from ..options import Option
from ..rows import ID_KEY, get_field, image_list, prompt_texts
from ..serving import IMAGE_EDIT, TEXT_TO_IMAGE, EditRequest, GeneratedImage, ImageRequest
from .regroup import per_row

log = logging.getLogger("pixmill.ops.images")



def _prompts(row: dict, key: str | None, rule: tuple[str, ...]) -> tuple[list[str], bool]:
    """The prompts of a row's field (``key``, else the first of ``rule`` the row has), and whether
    the field holds a list of prompts."""
    key = key or first_present(row, rule) or next((k for k in rule if k in row), None)
    value = get_field(row, key) if key else None
    if value is None:
        wanted = f"field {key!r}" if key else "none of the fields " + ", ".join(rule)
        raise ValueError(f"{wanted} holds a prompt (set --input-key to the field that holds it)")
    prompts = prompt_texts(value)
    is_list = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not prompts:
        raise ValueError(f"field {key!r} holds no prompt")
    for i, text in enumerate(prompts):
        if not text.strip():
            where = f"{key!r}" if len(prompts) == 1 else f"{key!r} (prompt {i})"
            raise ValueError(f"empty prompt in field {where}")
    return prompts, is_list or len(prompts) > 1


def save_image(image: GeneratedImage, path: Path) -> None:
    """Write one image: a PIL image as PNG, encoded ``data`` bytes as they are.

    Written to a temporary name and renamed, so a killed run never leaves a half-written file
    under a name that a row could point to.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image.image
    if image.data is None and pixels is None:
        raise ValueError("the serving returned an image with neither pixels nor data")
    if image.data is not None:
        data = image.data
    else:
        buf = io.BytesIO()
        pixels.save(buf, format="PNG")
        data = buf.getvalue()
    # Renamed into place (a killed run never leaves half an image), not fsynced: an fsync per image
    # would cost more than the power loss it guards against.
    write_atomic(path, data, durable=False)
    try:
        if pixels is None:
            from PIL import Image

            pixels = Image.open(io.BytesIO(image.data))
        write_sidecar(pixels, path)
    except Exception as exc:  # noqa: BLE001 - a thumbnail is a convenience; the gallery can make it later
        log.debug("no thumbnail for %s: %s", path, exc)


LIST_FIELDS = (GENERATED_IMAGES, EDITED_IMAGES)

# Options both image operators take (after their own input and output fields).
_COMMON_OPTIONS = (
    Option("images_per_prompt", int, None, "images per prompt or instruction, each with its own seed "
           "(default: the serving's num_images_per_prompt, else 1)"),
    Option("negative_key", str, None, "field holding a per-row negative prompt (optional)"),
    Option("control_key", str, None, "field holding the control image(s) for a serving with ControlNets: one "
           f"path, or one per ControlNet (default: {fields.CONTROL_IMAGE})"),
    Option("reference_key", str, None, "field holding the reference image(s) for a serving with an IP-Adapter "
           f"(default: {fields.REFERENCE_IMAGES})"),
)


class _ImageOperator(Operator):
    """What generate-images and edit-images share: seeds, saving, the output shape."""

    default_batch_size = 1
    prompt_fields: tuple[str, ...] = PROMPT_FIELDS  # where the prompt is when --input-key is not set

    def fields_read(self) -> list[tuple[str, ...]]:
        key = self.config["input_key"]
        read = [(key,) if key else self.prompt_fields]
        serving = self.serving
        if serving is None:
            return read
        # The field check runs before any model loads: the moment to reject a key nothing will read.
        if self.config["control_key"] and not serving.control_image_count():
            raise ConfigError(f"{self.name} --control-key: serving {serving.name!r} runs no ControlNet",
                              "give the serving one (--controlnet MODEL on the diffusers or flux serving)")
        if self.config["reference_key"] and not serving.uses_reference_images():
            raise ConfigError(f"{self.name} --reference-key: serving {serving.name!r} has no IP-Adapter",
                              "give the serving one (--ip-adapter REPO on the diffusers or flux serving)")
        if serving.control_image_count():
            read.append((self.config["control_key"] or fields.CONTROL_IMAGE,))
        if serving.uses_reference_images():
            read.append((self.config["reference_key"] or fields.REFERENCE_IMAGES,))
        return read

    @property
    def images_per_prompt(self) -> int:
        n = self.config.get("images_per_prompt")
        if n is None and self.serving is not None:
            n = self.serving.images_per_prompt()
        return max(1, int(n or 1))

    @property
    def batch_size(self) -> int:
        """Rows per batch: ``--batch-size``, else what fills the serving's ``batch_size`` (images
        per model call), else the serving's preferred rows per batch, else one row."""
        if self.config.get("batch_size"):
            return int(self.config["batch_size"])
        per_call = self.serving.images_per_call() if self.serving is not None else None
        if per_call:
            return max(1, int(per_call) // self.images_per_prompt)
        preferred = self.serving.rows_per_batch() if self.serving is not None else None
        return int(preferred or self.default_batch_size)

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        """One request per prompt of each row (``images_per_prompt`` seeds each), one serving call
        for the whole batch; a row whose input is bad fails alone, before the call."""
        n = self.images_per_prompt
        requests: list[Any] = []
        plans: list[Any] = []
        for row in rows:
            try:
                prompts, as_list = _prompts(row, self.config["input_key"], self.prompt_fields)
                inputs = self._inputs(row, ctx)
                conditioning, used = self._conditioning(row, ctx)
            except ValueError as exc:
                plans.append(Failed(str(exc)))
                continue
            negative = get_field(row, self.config["negative_key"]) if self.config["negative_key"] else None
            rid = str(row[ID_KEY])
            for p, prompt in enumerate(prompts):
                seeds = [ctx.seed_for(rid, p * n + k) for k in range(n)]
                requests.append(self._request(prompt, seeds, str(negative) if negative else None,
                                              {**inputs, **conditioning}))
            plans.append((len(prompts), as_list, used))
        results = self._call(requests) if requests else []
        return self._finish(rows, plans, results, ctx)

    def _inputs(self, row: dict, ctx: StepContext) -> dict:
        """Per-row inputs besides the prompt (reference images, mask); raise ValueError if bad."""
        return {}

    def _conditioning(self, row: dict, ctx: StepContext) -> tuple[dict, dict]:
        """The control and reference images the serving asked for (request fields), and the paths
        used (recorded with each image); raise ValueError if the row lacks them."""
        inputs: dict[str, Any] = {}
        used: dict[str, Any] = {}
        if self.serving is None:
            return inputs, used
        wanted = self.serving.control_image_count()
        if wanted:
            key = self.config["control_key"] or fields.CONTROL_IMAGE
            paths = image_list(get_field(row, key))
            if not paths:
                raise ValueError(f"field {key!r} holds no control image (make one with a control-image step, "
                                 "or set --control-key to the field that has it)")
            if len(paths) not in (1, wanted):
                raise ValueError(f"field {key!r} holds {len(paths)} control images for {wanted} ControlNets: "
                                 "give one image, or one per ControlNet")
            inputs["control_images"] = [open_row_image(ctx, p, key, row=row) for p in paths]
            used["control_image"] = paths[0] if len(paths) == 1 else paths
        if self.serving.uses_reference_images():
            key = self.config["reference_key"] or fields.REFERENCE_IMAGES
            paths = image_list(get_field(row, key))
            if not paths:
                raise ValueError(f"field {key!r} holds no reference image for the IP-Adapter "
                                 "(set --reference-key to the field that has it)")
            inputs["reference_images"] = [open_row_image(ctx, p, key, row=row) for p in paths]
            used["reference_images"] = paths
        return inputs, used

    def _request(self, prompt: str, seeds: list[int], negative: str | None, inputs: dict) -> Any:
        raise NotImplementedError

    def _call(self, requests: list) -> list:
        raise NotImplementedError

    def _finish(self, rows: list[dict], plans: list[Any], results: list[Any], ctx: StepContext) -> list[Outcome]:
        """Save the images of each row and build its output row (or its failure)."""
        out_key = self.config["output_key"]
        outcomes: list[Outcome] = []
        for row, plan, row_results, error in per_row(rows, plans, results):
            if isinstance(plan, Failed):
                outcomes.append(plan)
                continue
            n_requests, as_list, used = plan
            if error is not None:
                outcomes.append(Failed(failure_reason(error)))
                continue
            images = [img for imgs in row_results for img in imgs]
            expected = n_requests * self.images_per_prompt
            if len(images) != expected:
                outcomes.append(Failed(f"the serving returned {len(images)} images, expected {expected}"))
                continue
            paths, metas = [], []
            for index, image in enumerate(images):
                absolute, relative = ctx.image_path(str(row[ID_KEY]), index, image.suffix or ".png")
                save_image(image, absolute)
                paths.append(relative)
                metas.append({**image.params, **used, "index": index})
            # The default fields are lists, as in DataFlow-MM (`"images": [""]` placeholders); so is
            # a field that already held a list.
            many = as_list or len(paths) > 1 or isinstance(row.get(out_key), list) or out_key in LIST_FIELDS
            outcomes.append({**row, out_key: paths if many else paths[0],
                             meta_field(out_key): metas if many else metas[0]})
        return outcomes


class GenerateImages(_ImageOperator):
    """Text-to-image: one or more images per prompt, with a per-image seed.

    The prompt field holds a string, a list of prompts, or a DataFlow-MM ``conversations`` list.
    Each image's seed derives from the run seed, the row id and the image index, so the same
    inputs give the same pixels and different rows never share noise. See the module docstring
    for the output shape.
    """

    name = "generate-images"
    description = "text-to-image with any text-to-image serving; writes PNGs into the run folder"
    capability = TEXT_TO_IMAGE
    options = (
        Option("input_key", str, None, "field holding the prompt: a string, a list of prompts, or a "
               "DataFlow-MM conversations list (default: prompt, else conversations)"),
        Option("output_key", str, GENERATED_IMAGES, "field to write the image paths to (a list); "
               "provenance goes to <output_key>_meta"),
        *_COMMON_OPTIONS,
    )

    def _request(self, prompt: str, seeds: list[int], negative: str | None, inputs: dict) -> ImageRequest:
        return ImageRequest(prompt=prompt, seeds=seeds, negative_prompt=negative, **inputs)

    def _call(self, requests: list) -> list:
        return self.serving.generate(requests)


class EditImages(_ImageOperator):
    """Image editing: apply an instruction to a row's reference image(s).

    The image field holds one path or a list of paths (several reference images go to the serving
    in order; how they are used is the serving's business). An optional mask field serves
    inpainting. An instruction field holding several instructions applies each to the same
    images, giving a list of edited images. Missing or unreadable images fail the row with the
    file named. See the module docstring for the output shape.
    """

    name = "edit-images"
    description = "edit images with any image-edit serving; writes PNGs into the run folder"
    capability = IMAGE_EDIT
    options = (
        Option("input_key", str, None, "field holding the edit instruction: a string, a list, or DataFlow-MM "
               "conversations (default: instruction, else edit_instruction, conversations, prompt)"),
        Option("image_key", str, SOURCE_IMAGES, "field holding the reference image path, or a list of paths"),
        Option("mask_key", str, None, "field holding a mask image path for inpainting (white = repaint); "
               "rows without one are edited without a mask"),
        Option("output_key", str, EDITED_IMAGES, "field to write the edited image paths to (a list); "
               "provenance goes to <output_key>_meta"),
        *_COMMON_OPTIONS,
    )

    prompt_fields = INSTRUCTION_FIELDS

    def fields_read(self) -> list[tuple[str, ...]]:
        return [*super().fields_read(), (self.config["image_key"],)]  # a mask is optional per row

    def _inputs(self, row: dict, ctx: StepContext) -> dict:
        return {"images": self._load_images(row, ctx), "mask": self._load_mask(row, ctx)}

    def _request(self, prompt: str, seeds: list[int], negative: str | None, inputs: dict) -> EditRequest:
        return EditRequest(prompt=prompt, seeds=seeds, negative_prompt=negative, **inputs)

    def _call(self, requests: list) -> list:
        return self.serving.edit(requests)

    def _load_images(self, row: dict, ctx: StepContext) -> list[Any]:
        key = self.config["image_key"]
        paths = image_list(get_field(row, key))
        if not paths:
            raise ValueError(f"field {key!r} holds no image (set --image-key to the field with the input image)")
        return [open_row_image(ctx, p, key, row=row, as_file=self.image_files) for p in paths]

    def _load_mask(self, row: dict, ctx: StepContext) -> Any:
        key = self.config["mask_key"]
        if not key:
            return None
        paths = image_list(get_field(row, key))
        if not paths:
            return None  # this row edits without a mask (image-to-image)
        if len(paths) > 1:
            raise ValueError(f"field {key!r} must hold one mask image path, found {len(paths)}")
        return open_row_image(ctx, paths[0], key, row=row, mode="L", as_file=self.image_files)


IMAGE_OPERATORS = [GenerateImages, EditImages]
