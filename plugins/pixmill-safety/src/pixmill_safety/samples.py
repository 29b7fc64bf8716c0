"""Synthetic sample images for tests, demos and benchmarks: distinct scenes and their near copies."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any


def scene(seed: int, side: int = 256) -> Any:
    """A distinct picture (a gradient sky and a dozen random shapes); the same seed, the same pixels."""
    from PIL import Image, ImageDraw

    rnd = random.Random(seed)
    img = Image.new("RGB", (side, side))
    draw = ImageDraw.Draw(img)
    top, bottom = [rnd.randrange(256) for _ in range(3)], [rnd.randrange(256) for _ in range(3)]
    for y in range(side):
        t = y / side
        draw.line((0, y, side, y), fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    for _ in range(12):
        x0, y0 = rnd.randrange(side), rnd.randrange(side)
        x1, y1 = x0 + rnd.randrange(side // 12, side // 2), y0 + rnd.randrange(side // 12, side // 2)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return img


def near_copies(img: Any, folder: Path, stem: str) -> dict[str, str]:
    """Write a half-size, a JPEG quality 70 and a 10% brighter copy of ``img``: {kind: file name}."""
    from PIL import Image, ImageEnhance

    folder = Path(folder)
    out = {"resized": f"{stem}-small.png", "jpeg70": f"{stem}-q70.jpg", "brighter": f"{stem}-bright.png"}
    img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(folder / out["resized"])
    img.save(folder / out["jpeg70"], quality=70)
    ImageEnhance.Brightness(img).enhance(1.1).save(folder / out["brighter"])
    return out
