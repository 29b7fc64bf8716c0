"""Depth maps for depth ControlNets, from a transformers depth-estimation model.

Any checkpoint ``AutoModelForDepthEstimation`` loads works: DPT (``Intel/dpt-hybrid-midas``,
``Intel/dpt-large``), Depth Anything (``depth-anything/Depth-Anything-V2-Small-hf``, its metric
variants), GLPN... The map is written the way the depth ControlNets were trained on it (the diffusers
ControlNet depth examples, controlnet_aux): the model's prediction resized to the source image,
min-max normalised to 0..255 with near bright and far dark, as an 8-bit image with three equal
channels. Relative models (MiDaS-style DPT, Depth Anything) predict inverse depth, already near =
large; metric models predict distances, so their maps are inverted first.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from .estimators import load_estimator, pick_device, same_size_batches

log = logging.getLogger("pixmill.diffusers.depth")

# Model types whose prediction is a distance (far = large); the rest predict inverse depth.
METRIC_MODEL_TYPES = frozenset({"zoedepth", "glpn", "depth_pro"})
EXAMPLE = "depth-anything/Depth-Anything-V2-Small-hf"


def depth_to_image(depth: Any, near_is_large: bool = True) -> Any:
    """An 8-bit RGB PIL image (three equal channels) of a 2-D depth prediction: min-max normalised
    to 0..255, near bright. A flat prediction gives a black image."""
    import numpy as np
    from PIL import Image

    values = np.asarray(depth, dtype=np.float64)
    if not near_is_large:
        values = -values
    low, high = float(values.min()), float(values.max())
    grey = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    grey = grey.clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1))


class DepthEstimator:
    """A depth-estimation model (hub id or local folder) that turns RGB images into depth maps of
    the same size, ``batch`` images per forward pass, on ``device`` (``auto``: CUDA when present)."""

    def __init__(self, model: str, revision: str | None = None, device: str | None = "auto", batch: int = 8):
        self.name, self.revision, self.batch = model, revision, batch
        self.device = pick_device(device)
        self._model, self._processor = load_estimator(_model_class(), model, revision, self.device,
                                                      "depth-estimation", EXAMPLE)
        config = self._model.config
        self.near_is_large = not (config.model_type in METRIC_MODEL_TYPES
                                  or getattr(config, "depth_estimation_type", None) == "metric")
        log.info("depth: %s (%s) on %s", model, config.model_type, self.device)

    def maps(self, images: Sequence[Any]) -> list[Any]:
        """The depth map of each PIL image, in order, each the size of its source."""
        import torch

        out: list[Any] = [None] * len(images)
        for indexes in same_size_batches(images, self.batch):
            chunk = [images[i] for i in indexes]
            inputs = self._processor(images=chunk, return_tensors="pt")
            with torch.inference_mode():
                outputs = self._model(pixel_values=inputs["pixel_values"].to(self.device))
            sizes = [(image.height, image.width) for image in chunk]
            results = self._processor.post_process_depth_estimation(outputs, target_sizes=sizes)
            for i, result in zip(indexes, results, strict=False):
                out[i] = depth_to_image(result["predicted_depth"].float().cpu().numpy(), self.near_is_large)
        return out


def _model_class() -> Any:
    from transformers import AutoModelForDepthEstimation

    return AutoModelForDepthEstimation
