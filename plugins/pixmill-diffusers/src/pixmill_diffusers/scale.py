"""The asked upscaling factor, from a model with a fixed one (x4 models asked for x2, say)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("pixmill.diffusers")


def resize_to_scale(image: Any, input_size: tuple[int, int], scale: float | None, native: int) -> Any:
    """``image`` (the model's output, ``native`` times the input) resized to ``scale`` times
    ``input_size`` with Lanczos; unchanged when no scale is asked or it is the native one."""
    from PIL import Image

    if not scale or scale == native:
        return image
    if scale <= 0:
        raise ValueError(f"--scale must be positive, got {scale}")
    size = (max(1, round(input_size[0] * scale)), max(1, round(input_size[1] * scale)))
    return image if image.size == size else image.resize(size, Image.LANCZOS)
