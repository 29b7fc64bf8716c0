"""The SDXL base + refiner handoff (``--refiner MODEL --denoising-split 0.8``): the base denoises
the first part of the schedule and hands its latents to the refiner, which finishes them in the
same call, as in the SDXL 1.0 "ensemble of expert denoisers" recipe."""

from __future__ import annotations

import inspect
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from pixmill.errors import ConfigError
from pixmill.options import Option

from .model_path import resolve_model

log = logging.getLogger("pixmill.diffusers")

REFINER_OPTIONS = (
    Option("refiner", str, None, "SDXL refiner (hub id or folder) that finishes each text-to-image call from "
           "the base's latents, e.g. stabilityai/stable-diffusion-xl-refiner-1.0"),
    Option("denoising_split", float, None, "with --refiner: the fraction of the steps the base runs before "
           "the refiner takes over (default 0.8)"),
)
DEFAULT_SPLIT = 0.8
# Components the SDXL 1.0 base and refiner have in common: loaded once when their configs agree.
_SHAREABLE = ("vae", "text_encoder_2")
_ARCH_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
              "projection_dim", "block_out_channels", "latent_channels", "layers_per_block", "scaling_factor")


def refiner_config(config: dict[str, Any]) -> dict[str, Any]:
    """Where the refiner comes from: the serving's cache settings with the refiner as the model."""
    return {"model": config["refiner"], "revision": None, "cache_dir": config.get("cache_dir"),
            "local_dir": config.get("local_dir")}


def denoising_split(config: dict[str, Any]) -> float:
    split = config.get("denoising_split")
    return DEFAULT_SPLIT if split is None else float(split)


def check_refiner(config: dict[str, Any]) -> None:
    if not config.get("refiner"):
        if config.get("denoising_split") is not None:
            raise ConfigError("--denoising-split is given without --refiner", "add --refiner MODEL, or drop it")
        return
    split = denoising_split(config)
    if not 0.0 < split < 1.0:
        raise ConfigError(f"--denoising-split {split} is outside 0..1",
                          "give the fraction of steps the base runs, e.g. --denoising-split 0.8")
    resolve_model(refiner_config(config), download=False)


def _same_architecture(folder: Path, name: str, module: Any) -> bool:
    path = folder / name / "config.json"
    if module is None or not path.is_file():
        return False
    theirs = json.loads(path.read_text(encoding="utf-8"))
    ours = module.config if isinstance(module.config, dict) else module.config.to_dict()
    return all(json.dumps(theirs.get(k)) == json.dumps(ours.get(k)) for k in _ARCH_KEYS)


def load_refiner(base: Any, config: dict[str, Any], torch_dtype: Any) -> Any:
    """The refiner as an image-to-image pipeline; the VAE and second text encoder are the base's
    when their architectures agree (SDXL 1.0's do), which saves their memory."""
    from diffusers import AutoPipelineForImage2Image

    if "denoising_end" not in inspect.signature(type(base).__call__).parameters:
        raise ConfigError(f"--refiner needs a base pipeline that can stop part-way (SDXL); "
                          f"{type(base).__name__} cannot", "drop --refiner, or use an SDXL base model")
    where, kwargs = resolve_model(refiner_config(config), download=True)
    if Path(where).is_dir():
        for name in _SHAREABLE:
            if _same_architecture(Path(where), name, getattr(base, name, None)):
                kwargs[name] = getattr(base, name)
    with warnings.catch_warnings():
        # diffusers 0.42 renamed torch_dtype to dtype; older releases know only torch_dtype.
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        refiner = AutoPipelineForImage2Image.from_pretrained(where, torch_dtype=torch_dtype, **kwargs)
    if "denoising_start" not in inspect.signature(type(refiner).__call__).parameters:
        raise ConfigError(f"refiner {config['refiner']} ({type(refiner).__name__}) cannot start part-way",
                          "pass an SDXL refiner, e.g. stabilityai/stable-diffusion-xl-refiner-1.0")
    refiner.set_progress_bar_config(disable=True)
    log.info("refiner %s loaded (shares %s with the base)", config["refiner"],
             ", ".join(k for k in _SHAREABLE if k in kwargs) or "nothing")
    return refiner


def run_with_refiner(base: Any, refiner: Any, kwargs: dict[str, Any], split: float) -> Any:
    """One base call stopped at ``split``, its latents finished by one refiner call."""
    import torch

    seeds = [g.initial_seed() for g in kwargs["generator"]]
    latents = base(**kwargs, denoising_end=split, output_type="latent").images
    finish = {k: v for k, v in kwargs.items() if k in ("prompt", "negative_prompt", "num_inference_steps",
                                                       "guidance_scale")}
    # Fresh generators from the same seeds: the refiner's noise, if it draws any, is per image too.
    finish["generator"] = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    return refiner(**finish, image=latents, denoising_start=split)
