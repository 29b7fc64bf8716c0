"""The ``control-image`` operator: makes a ControlNet's control image from a row's image.

``--kind canny`` runs OpenCV's Canny edge detector (white edges on black, three channels, as the
canny ControlNets were trained on). The result goes to the ``control_image`` field by default,
which is where ``generate-images``/``edit-images`` look for it when their serving runs a
ControlNet, so ``control-image --kind canny generate-images --serving diffusers --controlnet ...``
needs no key options.

Depth and pose maps need their own estimator models (a depth network; a pose detector plus a
skeleton renderer) and are not built in: make them with the tool of your choice and point
``--control-key`` at their field.
"""

from __future__ import annotations

from typing import Any

from pixmill import fields
from pixmill.context import StepContext
from pixmill.image_files import open_row_image
from pixmill.operator import Failed, Operator, Outcome
from pixmill.ops.images import save_image
from pixmill.options import Option
from pixmill.rows import ID_KEY, get_field, image_list
from pixmill.serving import GeneratedImage

KINDS = ("canny",)


def canny(image: Any, low: int, high: int) -> Any:
    """White-on-black Canny edges of a PIL image, as an RGB PIL image of the same size."""
    import cv2
    import numpy as np
    from PIL import Image

    edges = cv2.Canny(np.asarray(image.convert("RGB")), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


class ControlImage(Operator):
    """Make a control image for a ControlNet from each row's image (``--kind canny``: OpenCV edges).

    Reads ``--image-key`` (default: the row's newest images, see pixmill.fields), writes the control
    image path to ``--output-key`` (default ``control_image``; a list when the row had several
    images) and its settings to ``<output-key>_meta``.
    """

    name = "control-image"
    description = "make ControlNet control images from row images (canny edges with OpenCV)"
    options = (
        Option("kind", str, None, "what to extract (default: canny)", choices=KINDS),
        Option("image_key", str, None, "field with the source image(s) (default: the row's newest images: "
               "edited_images, else images, else image)"),
        Option("output_key", str, fields.CONTROL_IMAGE, "field to write the control image path(s) to"),
        Option("low_threshold", int, 100, "canny: gradients below this are never edges"),
        Option("high_threshold", int, 200, "canny: gradients above this are always edges"),
    )
    default_batch_size = 16

    def fields_read(self) -> list[tuple[str, ...]]:
        key = self.config["image_key"]
        return [(key,) if key else fields.RESULT_IMAGE_FIELDS]

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        return [self._one(row, ctx) for row in rows]

    def _one(self, row: dict, ctx: StepContext) -> Outcome:
        key = self.config["image_key"] or fields.result_image_field(row)
        if key is None:
            return Failed("no image in this row (it has no edited_images, images or image field; "
                          "set --image-key)")
        try:
            paths = image_list(get_field(row, key))
            if not paths:
                raise ValueError(f"field {key!r} holds no image (set --image-key to the field with the source image)")
            sources = [open_row_image(ctx, p, key, row=row) for p in paths]
        except ValueError as exc:
            return Failed(str(exc))
        low, high = self.config["low_threshold"], self.config["high_threshold"]
        out_paths = []
        for index, source in enumerate(sources):
            absolute, relative = ctx.image_path(str(row[ID_KEY]), index, ".png", tag="control")
            save_image(GeneratedImage(image=canny(source, low, high)), absolute)
            out_paths.append(relative)
        out = self.config["output_key"]
        many = len(out_paths) > 1
        meta = {"kind": self.config["kind"] or KINDS[0], "low_threshold": low, "high_threshold": high, "source": paths}
        return {**row, out: out_paths if many else out_paths[0], fields.meta_field(out): meta}
