"""The ``control-image`` operator: makes a ControlNet's control image from a row's image.

- ``--kind canny`` runs OpenCV's Canny edge detector (white edges on black, three channels, as the
  canny ControlNets were trained on). No model needed.
- ``--kind depth --model MODEL`` runs a transformers depth-estimation model (DPT, Depth Anything...)
  and writes the 8-bit depth map depth ControlNets expect (near bright), see
  :mod:`pixmill_diffusers.depth_estimation`.
- ``--kind pose --model MODEL`` runs a ViTPose model (on the whole image, or on each person a
  ``--detector`` finds) and draws the OpenPose-style skeleton openpose ControlNets expect, see
  :mod:`pixmill_diffusers.pose_estimation` and :mod:`pixmill_diffusers.openpose_draw`; the
  keypoints go to ``<output-key>_meta``.

The result goes to the ``control_image`` field by default, which is where ``generate-images`` /
``edit-images`` look for it when their serving runs a ControlNet, so ``control-image --kind depth
--model M generate-images --serving diffusers --controlnet ...`` needs no key options. Every map has
the size of its source image.
"""

from __future__ import annotations

from typing import Any

from pixmill import fields
from pixmill.context import StepContext
from pixmill.errors import ConfigError
from pixmill.image_files import open_row_image
from pixmill.operator import Failed, Operator, Outcome
from pixmill.ops.images import save_image
from pixmill.options import Option
from pixmill.rows import ID_KEY, get_field, image_list
from pixmill.serving import GeneratedImage

KINDS = ("canny", "depth", "pose")
MODEL_KINDS = ("depth", "pose")


def canny(image: Any, low: int, high: int) -> Any:
    """White-on-black Canny edges of a PIL image, as an RGB PIL image of the same size."""
    import cv2
    import numpy as np
    from PIL import Image

    edges = cv2.Canny(np.asarray(image.convert("RGB")), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


class ControlImage(Operator):
    """Make a control image for a ControlNet from each row's image: ``--kind canny`` (OpenCV edges),
    ``depth`` (a depth-estimation model) or ``pose`` (a ViTPose model, drawn as an OpenPose skeleton).

    Reads ``--image-key`` (default: the row's newest images, see pixmill.fields), writes the control
    image path to ``--output-key`` (default ``control_image``; a list when the row had several
    images) and its settings (and, for pose, the keypoints) to ``<output-key>_meta``.
    """

    name = "control-image"
    description = "make ControlNet control images from row images (canny edges; depth maps and poses from a model)"
    options = (
        Option("kind", str, None, "what to extract (default: canny)", choices=KINDS),
        Option("image_key", str, None, "field with the source image(s) (default: the row's newest images: "
               "edited_images, else images, else image)"),
        Option("output_key", str, fields.CONTROL_IMAGE, "field to write the control image path(s) to"),
        Option("low_threshold", int, 100, "canny: gradients below this are never edges"),
        Option("high_threshold", int, 200, "canny: gradients above this are always edges"),
        Option("model", str, None, "depth, pose: the estimator, a hub id or local folder (depth: e.g. "
               "depth-anything/Depth-Anything-V2-Small-hf, Intel/dpt-hybrid-midas; pose: a ViTPose model such as "
               "usyd-community/vitpose-base-simple)"),
        Option("revision", str, None, "depth, pose: hub revision of --model (branch, tag or commit)"),
        Option("detector", str, None, "pose: a transformers object detector that finds the people first (e.g. "
               "PekingU/rtdetr_r50vd_coco_o365); without one the whole image is one person"),
        Option("detector_threshold", float, 0.5, "pose: person boxes the detector scores below this are ignored"),
        Option("keypoint_threshold", float, 0.3, "pose: keypoints scoring below this are not drawn"),
        Option("device", str, "auto", "depth, pose: auto (cuda when present, else cpu), cpu, cuda, cuda:1...",
               cache=False),
        Option("model_batch", int, 8, "depth, pose: images per forward pass", cache=False),
    )
    default_batch_size = 16

    def __init__(self, serving: Any = None, **options: Any):
        super().__init__(serving, **options)
        kind, config = self.kind, self.config
        if kind in MODEL_KINDS and not config["model"]:
            example = ("depth-anything/Depth-Anything-V2-Small-hf" if kind == "depth"
                       else "usyd-community/vitpose-base-simple")
            raise ConfigError(f"control-image --kind {kind} needs a model",
                              f"pass --model {example} (or a local folder; `pixmill diffusers make-tiny DIR "
                              f"--kind {kind}` builds a tiny test one)")
        if kind not in MODEL_KINDS and config["model"]:
            raise ConfigError(f"control-image: --model is for --kind depth or pose, not {kind}",
                              "pass --kind depth or --kind pose, or drop --model")
        if kind != "pose" and config["detector"]:
            raise ConfigError(f"control-image: --detector is for --kind pose, not {kind}",
                              "pass --kind pose, or drop --detector")
        self._estimator: Any = None

    @property
    def kind(self) -> str:
        return self.config["kind"] or KINDS[0]

    def fields_read(self) -> list[tuple[str, ...]]:
        key = self.config["image_key"]
        return [(key,) if key else fields.RESULT_IMAGE_FIELDS]

    def start(self, ctx: StepContext) -> None:
        config = self.config
        if self.kind == "depth":
            from .depth_estimation import DepthEstimator

            self._estimator = DepthEstimator(config["model"], config["revision"], config["device"],
                                             config["model_batch"])
        elif self.kind == "pose":
            from .pose_estimation import PoseEstimator

            self._estimator = PoseEstimator(config["model"], config["revision"], config["device"],
                                            config["model_batch"], config["detector"], config["detector_threshold"])

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        if self.kind in MODEL_KINDS and self._estimator is None:
            self.start(ctx)
        sources = [self._sources(row, ctx) for row in rows]
        # Every readable image of the batch in one call, so the model sees full batches.
        maps, people = self._control_images([im for found in sources if not isinstance(found, Failed)
                                             for im in found[1]])
        out: list[Outcome] = []
        for row, found in zip(rows, sources, strict=False):
            if isinstance(found, Failed):
                out.append(found)
                continue
            count = len(found[1])
            out.append(self._write(row, ctx, found[0], maps[:count], people[:count]))
            maps, people = maps[count:], people[count:]
        return out

    def _sources(self, row: dict, ctx: StepContext) -> tuple[list[str], list[Any]] | Failed:
        """The row's source image paths and the images, or why it has none."""
        key = self.config["image_key"] or fields.result_image_field(row)
        if key is None:
            return Failed("no image in this row (it has no edited_images, images or image field; "
                          "set --image-key)")
        try:
            paths = image_list(get_field(row, key))
            if not paths:
                raise ValueError(f"field {key!r} holds no image (set --image-key to the field with the source image)")
            return paths, [open_row_image(ctx, p, key, row=row) for p in paths]
        except ValueError as exc:
            return Failed(str(exc))

    def _control_images(self, images: list[Any]) -> tuple[list[Any], list[list[dict] | None]]:
        """The control image of each source image, and (pose) the people found in each."""
        if self.kind == "canny":
            low, high = self.config["low_threshold"], self.config["high_threshold"]
            return [canny(image, low, high) for image in images], [None] * len(images)
        if self.kind == "depth":
            return self._estimator.maps(images), [None] * len(images)
        from .openpose_draw import coco_to_openpose, draw_openpose

        threshold = self.config["keypoint_threshold"]
        maps, people = [], []
        for image, found in zip(images, self._estimator.people(images), strict=False):
            maps.append(draw_openpose(image.size, [coco_to_openpose(p.keypoints, p.scores, threshold) for p in found]))
            people.append([_person_record(p) for p in found])
        return maps, people

    def _settings(self) -> dict[str, Any]:
        config = self.config
        if self.kind == "canny":
            return {"low_threshold": config["low_threshold"], "high_threshold": config["high_threshold"]}
        settings = {"model": config["model"], "revision": config["revision"]}
        if self.kind == "pose":
            settings.update(keypoint_threshold=config["keypoint_threshold"], detector=config["detector"])
            if config["detector"]:
                settings["detector_threshold"] = config["detector_threshold"]
        return {k: v for k, v in settings.items() if v is not None}

    def _write(self, row: dict, ctx: StepContext, sources: list[str], maps: list[Any],
               people: list[list[dict] | None]) -> dict:
        out_paths = []
        for index, control in enumerate(maps):
            absolute, relative = ctx.image_path(str(row[ID_KEY]), index, ".png", tag="control")
            save_image(GeneratedImage(image=control), absolute)
            out_paths.append(relative)
        out = self.config["output_key"]
        many = len(out_paths) > 1
        meta: dict[str, Any] = {"kind": self.kind, **self._settings(), "source": sources}
        if self.kind == "pose":  # one list of people per image, in the shape of the output field
            meta["people"] = people if many else people[0]
        return {**row, out: out_paths if many else out_paths[0], fields.meta_field(out): meta}


def _person_record(person: Any) -> dict[str, Any]:
    """One person as the meta records it: box, box score, and each COCO keypoint as [x, y, score]."""
    from .openpose_draw import COCO_KEYPOINTS

    return {"box": [round(v, 1) for v in person.box],
            "box_score": None if person.box_score is None else round(person.box_score, 3),
            "keypoints": {name: [round(x, 1), round(y, 1), round(s, 3)]
                          for name, (x, y), s in zip(COCO_KEYPOINTS, person.keypoints, person.scores, strict=False)}}
