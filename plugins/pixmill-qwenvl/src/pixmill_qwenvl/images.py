"""Image resolution bounds shared by every engine (vLLM, transformers, OpenAI-compatible servers).

Qwen2.5-VL sees an image as 14x14 patches merged 2x2, so sides are multiples of 28 and the number
of visual tokens is (h/28)*(w/28). ``min_pixels``/``max_pixels`` bound that cost. An image within the
bounds goes to the model as it is (uploaded byte for byte by the openai engine) and the model's
processor rounds its sides; one outside them is resized here, once, to fit. Either way the three
engines show the model the same pixels for the same row (a server would otherwise apply its own
bounds), and uploads stay small.
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


def upload_size(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = FACTOR) -> tuple[int, int]:
    """``(height, width)`` the model is given an image at: its own size when its area is within
    [min_pixels, max_pixels] (the model's processor then rounds the sides to multiples of
    ``factor``, the same way in every engine and in ``vllm serve``), else :func:`fit_size`."""
    if height > 0 and width > 0 and max(height, width) / min(height, width) <= MAX_ASPECT \
            and min_pixels <= height * width <= max_pixels:
        return height, width
    return fit_size(height, width, min_pixels, max_pixels, factor)


def fit_pixels(image: Any, min_pixels: int, max_pixels: int, factor: int = FACTOR) -> Any:
    """``image`` (PIL or :class:`~pixmill.image_files.ImageFile`, as RGB) at :func:`upload_size`;
    returned as it is when it is within the bounds."""
    from pixmill.http.uploads import resize_image
    from pixmill.image_files import pixels

    image = pixels(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    h, w = upload_size(image.height, image.width, min_pixels, max_pixels, factor)
    if (h, w) == (image.height, image.width):
        return image
    return resize_image(image, (w, h))
