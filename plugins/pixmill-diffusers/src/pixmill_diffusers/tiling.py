"""Run an image-to-image network tile by tile, so large images fit in memory.

Each tile is cut with ``overlap`` extra pixels of context on every side (clamped at the image
border), run through the network, and only its core is pasted into the output: a network whose
receptive field is within the overlap gives the same pixels as a run on the whole image.
"""

from __future__ import annotations

from typing import Any, Callable


def run_tiled(fn: Callable[[Any], Any], image: Any, scale: int, tile: int, overlap: int) -> Any:
    """``fn`` applied to ``image`` (a ``1 x C x H x W`` tensor) in tiles of ``tile`` pixels; ``fn``
    must return a tensor ``scale`` times larger. ``tile <= 0`` or an image within one tile runs
    whole. The output is assembled on the CPU."""
    import torch

    _, _, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return fn(image).float().cpu()
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            y1, x1 = min(height, bottom + overlap), min(width, right + overlap)
            result = fn(image[:, :, y0:y1, x0:x1]).float().cpu()
            if out is None:
                out = torch.zeros(1, result.shape[1], height * scale, width * scale)
            core = result[:, :, (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
            out[:, :, top * scale:bottom * scale, left * scale:right * scale] = core
    return out
