"""What a checkpoint is, read from its ``model_index.json`` without loading weights, so a serving
given a pipeline it cannot drive says which operator or serving can."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixmill.errors import ConfigError

from .model_path import resolve_model

UPSCALER_CLASSES = frozenset({"StableDiffusionUpscalePipeline"})


def pipeline_class_name(config: dict[str, Any]) -> str | None:
    """The pipeline class a checkpoint names (``StableDiffusionXLPipeline``...), or None when it is
    not on this machine yet (a hub id still to download) or cannot be read."""
    try:
        where, _ = resolve_model(config, download=False)
    except ConfigError:
        return None
    index = Path(where) / "model_index.json"
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError):
        return None
