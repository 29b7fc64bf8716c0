"""Image resolution bounds shared by every engine (vLLM, transformers, OpenAI-compatible servers).

Qwen2.5-VL sees an image as 14x14 patches merged 2x2, so sides are multiples of 28 and the number
of visual tokens is (h/28)*(w/28). ``min_pixels``/``max_pixels`` bound that cost. Resizing here, once,
keeps the three engines showing the model the same pixels for the same row (a server would
otherwise apply its own defaults), and keeps uploads small.
"""

from __future__ import annotations

import math
from typing import Any

FACTOR = 28  # patch size 14 x spatial merge 2
MAX_ASPECT = 200  # the Qwen2-VL processors refuse more extreme aspect ratios


def fit_size(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = FACTOR) -> tuple[int, int]:
    """``(height, width)``: multiples of ``factor``, aspect kept, area within [min_pixels, max_pixels]."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f"image aspect ratio {width}x{height} is more extreme than {MAX_ASPECT}:1")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def fit_pixels(image: Any, min_pixels: int, max_pixels: int, factor: int = FACTOR) -> Any:
    """``image`` (PIL, converted to RGB) resized to :func:`fit_size`; returned as is when it fits."""
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    h, w = fit_size(image.height, image.width, min_pixels, max_pixels, factor)
    if (h, w) == (image.height, image.width):
        return image
    return image.resize((w, h), Image.Resampling.BICUBIC)
