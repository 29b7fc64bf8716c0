"""The gallery: a run shown as pictures in one self-contained HTML page (``pixmill gallery``).

The run is read through :class:`pixmill.Run` (rows with statuses, image files, provenance, step
figures), :mod:`.thumbs` makes cached thumbnails in parallel, and :mod:`.render` fills
``template.html`` (vanilla HTML/CSS/JS, nothing fetched from the network).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GalleryResult", "write_gallery"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: importing the package (for thumbs' sidecars) should not pay for the renderer.
    if name in ("GalleryResult", "write_gallery"):
        from . import render

        return getattr(render, name)
    raise AttributeError(name)
