"""The gallery: a run shown as pictures in one self-contained HTML page (``pixmill gallery``).

:mod:`.run_view` reads a run (rows with statuses, image columns, prompts, scores, step figures; the
exporter reads runs through it too), :mod:`.thumbs` makes cached thumbnails in parallel, and
:mod:`.render` fills ``template.html`` (vanilla HTML/CSS/JS, nothing fetched from the network).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GalleryResult", "RunView", "write_gallery"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: `pixmill --help` imports the export command, which reads runs through
    # run_view, and should not pay for the renderer and the thumbnailer.
    if name in ("GalleryResult", "write_gallery"):
        from . import render

        return getattr(render, name)
    if name == "RunView":
        from .run_view import RunView

        return RunView
    raise AttributeError(name)
