"""Human pose keypoints for openpose ControlNets, from a transformers ViTPose model.

ViTPose (``usyd-community/vitpose-base-simple`` and its siblings, ViTPose++ included) is a top-down
model: it finds the 17 COCO keypoints of one person inside a given box. Without a detector the
whole image is that box (right for pictures of one person); with ``detector`` (a transformers
object detector such as ``PekingU/rtdetr_r50vd_coco_o365``) every box it labels ``person`` above
``detector_threshold`` gets its own pose, as in the ViTPose examples of the transformers docs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from pixmill.errors import ConfigError

from .estimators import load_estimator, pick_device, same_size_batches
from .openpose_draw import COCO_KEYPOINTS

log = logging.getLogger("pixmill.diffusers.pose")

EXAMPLE = "usyd-community/vitpose-base-simple"
DETECTOR_EXAMPLE = "PekingU/rtdetr_r50vd_coco_o365"
# ViTPose++ checkpoints hold one head per training set ("experts"); index 0 is COCO's 17 keypoints.
COCO_DATASET_INDEX = 0


@dataclass
class Person:
    """One person's pose: the box it was looked for in (x, y, width, height, in pixels), the
    detector's score for that box (None for the whole image), and 17 COCO keypoints (x, y) with
    their scores."""

    box: list[float]
    box_score: float | None
    keypoints: list[list[float]]
    scores: list[float]


class PoseEstimator:
    """A ViTPose model, with an optional person detector, that finds the people of RGB images."""

    def __init__(self, model: str, revision: str | None = None, device: str | None = "auto", batch: int = 8,
                 detector: str | None = None, detector_threshold: float = 0.5):
        self.batch, self.detector_threshold = batch, detector_threshold
        self.device = pick_device(device)
        from transformers import AutoModelForObjectDetection, VitPoseForPoseEstimation

        self._model, self._processor = load_estimator(VitPoseForPoseEstimation, model, revision, self.device,
                                                      "ViTPose pose-estimation", EXAMPLE,
                                                      model_types=("vitpose",))
        keypoints = int(self._model.config.num_labels)
        if keypoints != len(COCO_KEYPOINTS):
            raise ConfigError(f"control-image: {model!r} predicts {keypoints} keypoints, not the 17 COCO body keypoints",
                              f"pass a COCO body ViTPose model such as {EXAMPLE}")
        self._experts = int(getattr(self._model.config.backbone_config, "num_experts", 1) or 1)
        self._detector = self._detector_processor = None
        if detector:
            self._detector, self._detector_processor = load_estimator(
                AutoModelForObjectDetection, detector, None, self.device, "object-detection", DETECTOR_EXAMPLE)
            labels = {str(v).lower(): int(k) for k, v in self._detector.config.id2label.items()}
            if "person" not in labels:
                raise ConfigError(f"control-image: detector {detector!r} has no 'person' label",
                                  f"pass a detector trained on COCO, such as {DETECTOR_EXAMPLE}")
            self._person_label = labels["person"]
        log.info("pose: %s on %s%s", model, self.device, f" with detector {detector}" if detector else "")

    def people(self, images: Sequence[Any]) -> list[list[Person]]:
        """The people found in each PIL image, in order (an empty list when the detector finds none)."""
        boxes = self._boxes(images)
        out: list[list[Person]] = [[] for _ in images]
        with_people = [i for i, b in enumerate(boxes) if b]
        for start in range(0, len(with_people), max(1, self.batch)):
            indexes = with_people[start:start + max(1, self.batch)]
            for i, people in zip(indexes, self._poses([images[i] for i in indexes], [boxes[i] for i in indexes]), strict=False):
                out[i] = people
        return out

    def _boxes(self, images: Sequence[Any]) -> list[list[tuple[list[float], float | None]]]:
        """Each image's person boxes (x, y, w, h) with the detector's scores; the whole image without one."""
        if self._detector is None:
            return [[([0.0, 0.0, float(im.width), float(im.height)], None)] for im in images]
        import torch

        out: list[list[tuple[list[float], float | None]]] = [[] for _ in images]
        for indexes in same_size_batches(images, self.batch):
            chunk = [images[i] for i in indexes]
            inputs = self._detector_processor(images=chunk, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self._detector(**inputs)
            found = self._detector_processor.post_process_object_detection(
                outputs, target_sizes=[(im.height, im.width) for im in chunk], threshold=self.detector_threshold)
            for i, result in zip(indexes, found, strict=False):
                for box, label, score in zip(result["boxes"].tolist(), result["labels"].tolist(),
                                             result["scores"].tolist(), strict=False):
                    if label == self._person_label:
                        x0, y0, x1, y1 = box
                        out[i].append(([x0, y0, x1 - x0, y1 - y0], float(score)))
        return out

    def _poses(self, images: list[Any], boxes: list[list[tuple[list[float], float | None]]]) -> list[list[Person]]:
        import numpy as np
        import torch

        coco_boxes = [np.array([b for b, _ in image_boxes], dtype=np.float32) for image_boxes in boxes]
        inputs = self._processor(images=images, boxes=coco_boxes, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        extra = {}
        if self._experts > 1:
            extra["dataset_index"] = torch.full((pixels.shape[0],), COCO_DATASET_INDEX, device=self.device)
        with torch.inference_mode():
            outputs = self._model(pixel_values=pixels, **extra)
        results = self._processor.post_process_pose_estimation(outputs, boxes=coco_boxes)
        return [[Person(box=list(box), box_score=score, keypoints=found["keypoints"].tolist(),
                        scores=found["scores"].tolist())
                 for (box, score), found in zip(image_boxes, image_results, strict=False)]
                for image_boxes, image_results in zip(boxes, results, strict=False)]
