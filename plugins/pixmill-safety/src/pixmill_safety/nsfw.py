"""``detect-nsfw``: the nudenet detector (a YOLO-style ONNX model shipped inside the ``nudenet``
wheel, so it runs offline) over each image, on CPU by default.

Images are decoded with PIL (a corrupt file fails its row with the reason), padded to a square,
resized to the model's 320 px and run a batch at a time through one onnxruntime session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pixmill.context import StepContext
from pixmill.image_files import open_row_image
from pixmill.operator import Dropped
from pixmill.ops.per_image import IMAGE_KEY, WORKERS, PerImageOperator
from pixmill.options import Option

# The classes of nudenet's 320n model, in output order.
LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)
# The labels whose confidence makes the image's ``nsfw`` score (explicit nudity).
EXPLICIT = ("FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED",
            "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")
INPUT_SIDE = 320
MIN_CONFIDENCE = 0.2  # nudenet's own cut for a detection; NMS as nudenet does (0.25 / 0.45)


def model_path() -> Path:
    import nudenet

    return Path(nudenet.__file__).with_name(f"{INPUT_SIDE}n.onnx")


class NudeNetDetector:
    """One onnxruntime session over nudenet's model; :meth:`detect` takes RGB arrays."""

    def __init__(self, threads: int | None = None, device: str = "cpu"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # One session per worker process: use the cores for one image's convolutions (intra-op),
        # not for running graph branches side by side (inter-op), which only contends.
        opts.intra_op_num_threads = int(threads or min(8, os.cpu_count() or 1))
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(model_path()), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    @staticmethod
    def preprocess(rgb: Any) -> tuple[Any, int]:
        """(1x3x320x320 float32 blob, padded side) of an HxWx3 uint8 RGB array: padded bottom-right to
        a square, then resized, as nudenet does."""
        import cv2
        import numpy as np

        h, w = rgb.shape[:2]
        side = max(h, w)
        padded = np.zeros((side, side, 3), dtype=np.uint8)
        padded[:h, :w] = rgb
        resized = cv2.resize(padded, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_LINEAR)
        return (resized.astype(np.float32) / 255.0).transpose(2, 0, 1)[None], side

    def detect(self, images: list[Any]) -> list[list[dict]]:
        """Detections per image: [{"label", "score", "box": [x, y, w, h]}] in image pixels."""
        import numpy as np

        if not images:
            return []
        blobs, sides = zip(*(self.preprocess(im) for im in images), strict=True)
        output = self.session.run(None, {self.input_name: np.concatenate(blobs)})[0]
        return [self._postprocess(output[i], sides[i], images[i].shape[:2]) for i in range(len(images))]

    @staticmethod
    def _postprocess(raw: Any, side: int, shape: tuple[int, int]) -> list[dict]:
        import cv2
        import numpy as np

        preds = raw.T  # (candidates, 4 box + classes)
        scores = preds[:, 4:]
        best = scores.max(axis=1)
        keep = best >= MIN_CONFIDENCE
        if not keep.any():
            return []
        preds, best, classes = preds[keep], best[keep], scores[keep].argmax(axis=1)
        scale = side / INPUT_SIDE
        h, w = shape
        boxes = []
        for cx, cy, bw, bh in preds[:, :4] * scale:
            x, y = max(0.0, min(cx - bw / 2, w)), max(0.0, min(cy - bh / 2, h))
            boxes.append([float(x), float(y), float(min(bw, w - x)), float(min(bh, h - y))])
        picked = cv2.dnn.NMSBoxes(boxes, best.astype(float).tolist(), 0.25, 0.45)
        return [{"label": LABELS[int(classes[i])], "score": round(float(best[i]), 4),
                 "box": [int(v) for v in boxes[i]]} for i in np.array(picked).reshape(-1)]


class DetectNsfw(PerImageOperator):
    """Detect nudity with nudenet; write per-label scores and one ``nsfw`` score per image.

    ``--output-key`` (default ``nsfw``) gets ``score`` (0-1: the highest confidence of an explicit
    label: exposed genitalia, breasts, buttocks or anus; 0 when none is seen), ``labels`` ({label:
    highest confidence} for every label detected, covered ones and faces included) and ``boxes``
    (the detections). Keep rows with ``filter --where "nsfw.score < 0.5"`` or drop them here with
    ``--drop-above 0.5`` (recorded in dropped.jsonl). One dict per image; a list for several images.
    """

    name = "detect-nsfw"
    description = "nudenet NSFW detector (ONNX, runs offline on CPU): per-label scores and an nsfw score"
    options = (
        IMAGE_KEY,
        Option("output_key", str, "nsfw", "field to write the scores to"),
        Option("drop_above", float, None, "drop rows whose nsfw score is at least this (e.g. 0.5)"),
        Option("boxes", bool, False, "also write the detection boxes"),
        Option("threads", int, None, "onnxruntime threads (default: CPU count, at most 8)", cache=False),
        Option("device", str, "cpu", "cpu, or cuda (needs onnxruntime-gpu)", cache=False),
        WORKERS,
    )
    default_batch_size = 16

    def start(self, ctx: StepContext) -> None:
        self._detector = NudeNetDetector(self.config["threads"], self.config["device"])

    def load(self, ctx: StepContext, row: dict, path: str, field: str) -> Any:
        import numpy as np

        return np.asarray(open_row_image(ctx, path, field, row=row))

    def measure(self, rows: list[dict], items: list[Any]) -> list[Any]:
        if getattr(self, "_detector", None) is None:
            self.start(None)  # type: ignore[arg-type]
        out = []
        for detections in self._detector.detect(items):
            labels: dict[str, float] = {}
            for d in detections:
                labels[d["label"]] = max(labels.get(d["label"], 0.0), d["score"])
            figure: dict[str, Any] = {"score": max((labels.get(k, 0.0) for k in EXPLICIT), default=0.0),
                                      "labels": labels}
            if self.config["boxes"]:
                figure["boxes"] = detections
            out.append(figure)
        return out

    def drop_reason(self, row: dict, figure: Any) -> Dropped | None:
        limit = self.config["drop_above"]
        if limit is None:
            return None
        score = max(f["score"] for f in (figure if isinstance(figure, list) else [figure]))
        if score < limit:
            return None
        return Dropped(f"nsfw score {score:.2f} >= {limit}", {"nsfw_score": score})
