"""What the transformers estimators behind ``control-image`` share: the device, loading a model
and its image processor with one clear error, and cutting images into batches the model can stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from pixmill.errors import ConfigError

from .base import quiet_progress_bars
from .model_path import looks_like_path


def pick_device(device: str | None) -> str:
    """``auto`` (or nothing): the first CUDA GPU when torch sees one, else the CPU; else ``device``."""
    import torch

    if not device or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"control-image: device {device} asked for, but torch sees no CUDA GPU",
                          "pass --device cpu (or auto), or install a CUDA build of torch")
    return device


def load_estimator(model_class: Any, name: str, revision: str | None, device: str, what: str,
                   example: str, model_types: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """``(model, image processor)`` of checkpoint ``name`` (hub id or folder) loaded with
    ``model_class.from_pretrained``, in eval mode on ``device``.

    A checkpoint that is missing or of another kind (an Auto class refuses it, or its model type is
    not one of ``model_types`` when given) raises one ConfigError naming ``what`` was expected and
    an ``example`` checkpoint that fits.
    """
    from transformers import AutoConfig, AutoImageProcessor

    quiet_progress_bars()
    fix = f"pass a {what} checkpoint: a hub id such as {example} (downloaded first when offline) or its local folder"
    if looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise ConfigError(f"control-image: model folder {name} does not exist", fix)
    try:
        config = AutoConfig.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"control-image: cannot load {name!r} as a {what} model ({_first_line(exc)})", fix) from None
    if model_types and config.model_type not in model_types:
        raise ConfigError(f"control-image: {name!r} is a {config.model_type} model, not a {what} model", fix)
    try:
        model = model_class.from_pretrained(name, revision=revision)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc) or "Unrecognized model" in str(exc):
            raise ConfigError(f"control-image: {name!r} is a {config.model_type} model, not a {what} model",
                              fix) from None
        raise ConfigError(f"control-image: cannot load {name!r} ({_first_line(exc)})", fix) from None
    except OSError as exc:
        raise ConfigError(f"control-image: cannot load {name!r} ({_first_line(exc)})", fix) from None
    try:
        # The PIL processors: the fast ones need torchvision, which this project never installs.
        processor = AutoImageProcessor.from_pretrained(name, revision=revision, backend="pil")
    except TypeError:  # transformers before the `backend` argument
        processor = AutoImageProcessor.from_pretrained(name, revision=revision, use_fast=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"control-image: {name!r} has no image processor ({_first_line(exc)})",
                          "the folder needs the preprocessor_config.json saved with the model") from None
    return model.to(device).eval(), processor


def same_size_batches(images: Sequence[Any], size: int) -> Iterator[list[int]]:
    """Indexes of ``images`` in batches of at most ``size`` images of one size each (processors
    that keep the aspect ratio give tensors of different shapes for different sizes)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.size, []).append(index)
    for indexes in groups.values():
        for start in range(0, len(indexes), max(1, size)):
            yield indexes[start:start + max(1, size)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
