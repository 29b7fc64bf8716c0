"""Where a serving's weights come from: a local diffusers folder, the Hugging Face cache, or a
per-model download folder. Checked before any work, with one clear error and its fix."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pixmill.errors import ConfigError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_path(model: str) -> bool:
    """A model string names a folder (rather than a hub id) when it is written as a path or exists."""
    return (model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1
            or Path(model).expanduser().exists())


def local_dir_for(local_dir: str, model: str, revision: str | None) -> Path:
    """The folder under ``local_dir`` for one checkpoint: never shared between models or revisions."""
    name = model.replace("/", "--") + (f"@{revision}" if revision else "")
    return Path(local_dir).expanduser() / name


def _check_folder(folder: Path, model: str) -> Path:
    if not folder.exists():
        raise ConfigError(f"model folder {model} does not exist",
                          "check --model (a local diffusers folder or a hub id such as black-forest-labs/FLUX.1-dev); "
                          "`pixmill diffusers make-tiny DIR` builds a tiny test model")
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"{model} is not a diffusers pipeline folder (it has no model_index.json)",
                          "point --model at a folder written by save_pretrained() or downloaded from the hub")
    return folder


def resolve_model(config: dict[str, Any], download: bool) -> tuple[str, dict[str, Any]]:
    """Where to load the pipeline from: ``(folder or hub id, from_pretrained keyword arguments)``.

    Raises ConfigError for a missing or non-diffusers folder, a malformed hub id, or a hub model
    that is not available offline. With ``download`` (in a worker, not in ``check()``) a model
    asked for with ``local_dir`` is downloaded into its own folder there first.
    """
    model = str(config["model"]).strip()
    revision = config.get("revision")
    cache_dir = config.get("cache_dir")
    if looks_like_path(model):
        return str(_check_folder(Path(model).expanduser(), model)), {}
    if not _HUB_ID.fullmatch(model):
        raise ConfigError(f"model {model!r} is neither an existing folder nor a hub id",
                          "pass a local diffusers folder or a hub id such as black-forest-labs/FLUX.1-dev")
    if config.get("local_dir"):
        folder = local_dir_for(config["local_dir"], model, revision)
        if (folder / "model_index.json").is_file():
            return str(folder), {}
        if hub_offline():
            raise ConfigError(f"model {model} is not in {folder} and HF_HUB_OFFLINE=1 forbids downloading it",
                              f"download it first (hf download {model} --local-dir {folder}) or unset HF_HUB_OFFLINE")
        if not download:
            return model, {}
        from huggingface_hub import snapshot_download

        snapshot_download(model, revision=revision, cache_dir=cache_dir, local_dir=str(folder))
        return str(_check_folder(folder, f"{model} (downloaded to {folder})")), {}
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "model_index.json", cache_dir=cache_dir, revision=revision)
        if not isinstance(found, str):
            where = f" at revision {revision}" if revision else ""
            raise ConfigError(f"model {model}{where} is not in the Hugging Face cache and HF_HUB_OFFLINE=1",
                              f"download it first (hf download {model}), pass --local-dir with a downloaded copy, "
                              "or pass --model with a local folder")
        return str(Path(found).parent), {}  # the cached snapshot folder: no network needed
    kwargs: dict[str, Any] = {}
    if revision:
        kwargs["revision"] = revision
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    return model, kwargs


def _cached_file(repo: str, filename: str, cache_dir: str | None, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision)
    return found if isinstance(found, str) else None


def pipeline_class_name(config: dict[str, Any]) -> str | None:
    """The pipeline class a ``--model`` names in its model_index.json, when that is known without
    downloading (a local folder, a ``--local-dir`` copy, or the hub cache); else ``None``."""
    model = str(config["model"]).strip()
    index: Path | None = None
    if looks_like_path(model):
        index = Path(model).expanduser() / "model_index.json"
    elif _HUB_ID.fullmatch(model):
        if config.get("local_dir"):
            index = local_dir_for(config["local_dir"], model, config.get("revision")) / "model_index.json"
        cached = _cached_file(model, "model_index.json", config.get("cache_dir"), config.get("revision"))
        if (index is None or not index.is_file()) and cached:
            index = Path(cached)
    if index is None or not index.is_file():
        return None
    import json

    return json.loads(index.read_text(encoding="utf-8")).get("_class_name")


def component_class_name(model: str, what: str, flag: str, cache_dir: str | None = None,
                         download: bool = False) -> str | None:
    """The model class a single-model folder or hub repo names in its config.json (a ControlNet,
    say), or ``None`` when that needs a download and ``download`` is false.

    Raises ConfigError for a missing folder, a folder without config.json, or a hub repo that is
    not in the cache while HF_HUB_OFFLINE=1.
    """
    import json

    model = model.strip()
    if looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"{what} folder {model} does not exist", f"check {flag} (a local folder or a hub id)")
        config = folder / "config.json"
        if not config.is_file():
            raise ConfigError(f"{model} is not a {what} folder (it has no config.json)",
                              f"point {flag} at a folder written by save_pretrained() or downloaded from the hub")
        return json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    if not _HUB_ID.fullmatch(model):
        raise ConfigError(f"{what} {model!r} is neither an existing folder nor a hub id",
                          f"pass {flag} a local folder or a hub id")
    cached = _cached_file(model, "config.json", cache_dir, None)
    if cached is None and hub_offline():
        raise ConfigError(f"{what} {model} is not in the Hugging Face cache and HF_HUB_OFFLINE=1",
                          f"download it first (hf download {model}) or pass {flag} a local folder")
    if cached is None and download:
        from huggingface_hub import hf_hub_download

        cached = hf_hub_download(model, "config.json", cache_dir=cache_dir)
    return json.loads(Path(cached).read_text(encoding="utf-8")).get("_class_name") if cached else None
