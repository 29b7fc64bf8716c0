"""IP-Adapter for the diffusers servings: image prompts (style or subject references) next to the
text prompt, on SD 1.5/SDXL (``IPAdapterMixin``) and FLUX.1 (``FluxIPAdapterMixin``).

diffusers applies one set of reference images to a whole pipeline call, so images with different
references run in different calls (images of one row, which share its references, still batch).
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from pixmill.errors import ConfigError

FLAG = "--ip-adapter"


class IPAdapter:
    """The ``--ip-adapter`` of one serving: where its weights and image encoder are, and its scale."""

    def __init__(self, config: dict[str, Any]):
        self.source: str | None = config.get("ip_adapter")
        self.weight_name: str | None = config.get("ip_adapter_weight_name")
        self.scale = float(config.get("ip_adapter_scale") if config.get("ip_adapter_scale") is not None else 1.0)
        self.image_encoder: str | None = config.get("ip_adapter_image_encoder")
        self.cache_dir = config.get("cache_dir")

    @property
    def enabled(self) -> bool:
        return bool(self.source)

    def location(self) -> tuple[str, str, str]:
        """``(repo or folder, subfolder, weight file name)`` as diffusers' loaders take them."""
        assert self.source
        path = Path(self.source).expanduser()
        if path.is_file():
            return str(path.parent), "", path.name
        if not self.weight_name:
            raise ConfigError(f"{FLAG} {self.source}: which weights file?",
                              "pass --ip-adapter-weight-name, e.g. models/ip-adapter_sd15.safetensors")
        weight = PurePosixPath(self.weight_name)
        subfolder = "" if str(weight.parent) == "." else str(weight.parent)
        return self.source, subfolder, weight.name

    def check(self) -> None:
        """Validate a local IP-Adapter without loading it (hub repos are checked when loaded)."""
        if not self.enabled:
            return
        source, subfolder, name = self.location()
        if self.source.startswith((".", "/", "~")) or Path(source).expanduser().exists():
            weights = Path(source).expanduser() / subfolder / name
            if not weights.is_file():
                raise ConfigError(f"IP-Adapter weights {weights} do not exist",
                                  "check --ip-adapter and --ip-adapter-weight-name")
            if not self.image_encoder and not (weights.parent / "image_encoder" / "config.json").is_file():
                raise ConfigError(f"no CLIP image encoder next to {weights} (looked for {weights.parent / 'image_encoder'})",
                                  "pass --ip-adapter-image-encoder (a hub id such as openai/clip-vit-large-patch14, "
                                  "or a folder)")

    def load_into(self, pipe: Any, flux: bool) -> None:
        """Load the adapter (and its image encoder, in the pipeline's dtype) into ``pipe``."""
        if not self.enabled:
            return
        source, subfolder, name = self.location()
        extra = {"cache_dir": self.cache_dir} if self.cache_dir else {}
        encoder = self.image_encoder
        if encoder and getattr(pipe, "image_encoder", None) is None and not flux:
            from transformers import CLIPVisionModelWithProjection

            pipe.register_modules(image_encoder=CLIPVisionModelWithProjection.from_pretrained(
                encoder, dtype=pipe.dtype, **extra))
        if flux:
            pipe.load_ip_adapter(source, weight_name=name, subfolder=subfolder,
                                 image_encoder_pretrained_model_name_or_path=encoder or source,
                                 image_encoder_subfolder="" if encoder else str(PurePosixPath(subfolder, "image_encoder")),
                                 image_encoder_dtype=pipe.dtype, **extra)
        else:
            pipe.load_ip_adapter(source, subfolder=subfolder, weight_name=name, **extra)
        pipe.set_ip_adapter_scale(self.scale)

    def for_request(self, images: list[Any]) -> tuple[tuple, dict[str, Any]]:
        """The group item that keeps calls with different references apart, and the call argument."""
        digest = hashlib.sha1()
        for image in images:
            digest.update(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
        # One adapter; a list of several reference images feeds it all of them.
        return ("@reference", digest.hexdigest()), {"ip_adapter_image": [list(images)]}

    def params(self) -> dict[str, Any]:
        return {"ip_adapter": self.source, "ip_adapter_weight_name": self.weight_name,
                "ip_adapter_scale": self.scale}
