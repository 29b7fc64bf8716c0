"""The ``esrgan`` serving: GAN upscalers (Real-ESRGAN, ESRGAN, SwinIR, HAT... any single-image
super-resolution file spandrel recognises), tiled for large images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pixmill.errors import ConfigError
from pixmill.options import Option
from pixmill.serving import UPSCALE, GeneratedImage, ImagesOrError, Serving, UpscaleRequest

from .base import parse_devices
from .scale import resize_to_scale
from .spandrel_import import NEEDS_TORCHVISION, import_spandrel
from .tiling import run_tiled

log = logging.getLogger("pixmill.diffusers.esrgan")

SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class EsrganServing(Serving):
    """A GAN upscaler file loaded through spandrel, which detects the architecture and its factor
    from the weights. Large images run in tiles with overlapping context, so memory stays flat
    whatever the input size. Options: docs/servings/esrgan.md."""

    name = "esrgan"
    description = "GAN upscalers (Real-ESRGAN, ESRGAN, SwinIR...) from a .pth/.safetensors file, tiled"
    capabilities = frozenset({UPSCALE})
    options = (
        Option("model", str, None, "the upscaler file (.pth or .safetensors), e.g. RealESRGAN_x4plus.pth",
               required=True),
        Option("tile", int, 512, "tile size in input pixels for large images (0: the whole image at once)"),
        Option("tile_overlap", int, 32, "context pixels around each tile, so tiles join without seams"),
        Option("dtype", str, "auto", "compute dtype: fp16 on GPUs where the model supports it, else fp32",
               choices=("auto", "fp32", "fp16", "bf16")),
        Option("devices", str, None, "where to run: all visible GPUs by default; '0,1', 'cuda:1' or 'cpu'",
               cache=False),
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._model: Any = None
        self._device: str | None = None
        self._dtype: Any = None

    def check(self) -> None:
        path = Path(self.config["model"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"upscaler file {self.config['model']} does not exist",
                              "pass --model with a Real-ESRGAN/ESRGAN .pth or .safetensors file "
                              "(`pixmill diffusers make-tiny DIR --kind esrgan` writes a tiny one)")
        if path.suffix.lower() not in SUFFIXES:
            raise ConfigError(f"upscaler file {path.name} is not a weights file",
                              f"pass a {', '.join(SUFFIXES)} file")
        if self.config["tile"] < 0 or self.config["tile_overlap"] < 0:
            raise ConfigError("--tile and --tile-overlap must be 0 or more", "e.g. --tile 512 --tile-overlap 32")
        if self.config.get("devices"):
            parse_devices(self.config["devices"])
        import_spandrel()

    def devices(self) -> list[str]:
        return parse_devices(self.config.get("devices"))

    def use_device(self, device: str) -> None:
        self._device = device

    def load(self) -> None:
        import torch

        spandrel = import_spandrel()
        device = self._device or self.devices()[0]
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device} asked for, but torch sees no CUDA GPU", "pass --devices cpu")
        path = str(Path(self.config["model"]).expanduser())
        try:
            model = spandrel.ModelLoader(device="cpu").load_from_file(path)
        except Exception as exc:  # noqa: BLE001 - spandrel's errors are about the file: name it
            raise ConfigError(f"cannot load upscaler {path}: {exc}",
                              "pass a Real-ESRGAN/ESRGAN-family .pth or .safetensors file") from None
        if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose != "SR":
            raise ConfigError(f"{path} is a {model.architecture.name} model for {model.purpose}, not an upscaler",
                              "pass a super-resolution model file")
        if model.architecture.id in NEEDS_TORCHVISION:
            raise ConfigError(f"{path}: architecture {model.architecture.name} is not served",
                              "pass a super-resolution model file")
        self._dtype = getattr(torch, self._dtype_name(model, device))
        model.model.to(device=device, dtype=self._dtype)
        model.eval()
        self._model, self._device = model, device
        log.info("esrgan: %s x%d on %s (%s)", model.architecture.name, model.scale, device, self._dtype)

    def _dtype_name(self, model: Any, device: str) -> str:
        asked = self.config["dtype"]
        if asked == "auto":
            return "float16" if device.startswith("cuda") and model.supports_half else "float32"
        if device == "cpu" and asked != "fp32":
            log.warning("dtype %s on the CPU: using fp32 instead", asked)
            return "float32"
        supported = {"fp16": model.supports_half, "bf16": model.supports_bfloat16}.get(asked, True)
        if not supported:
            raise ConfigError(f"{model.architecture.name} does not support {asked}", "pass --dtype fp32")
        return _DTYPES[asked]

    def unload(self) -> None:
        self._model = None

    def upscale(self, requests: list[UpscaleRequest]) -> list[ImagesOrError]:
        if self._model is None:
            self.load()
        out: list[ImagesOrError] = []
        for req in requests:
            try:
                out.append([self._upscale_one(req)])
            except Exception as exc:  # noqa: BLE001 - this image fails alone
                out.append(exc)
        return out

    def _upscale_one(self, req: UpscaleRequest) -> GeneratedImage:
        import numpy as np
        import torch
        from PIL import Image

        model = self._model
        pixels = np.asarray(req.image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)

        def run(part: Any) -> Any:
            return model(part.to(self._device, self._dtype))

        with torch.inference_mode():
            result = run_tiled(run, tensor, model.scale, self.config["tile"], self.config["tile_overlap"])
        array = (result[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        image = resize_to_scale(Image.fromarray(array), req.image.size, req.scale, model.scale)
        params = {"serving": self.name, "model": self.config["model"], "architecture": model.architecture.name,
                  "model_scale": model.scale, "scale": req.scale or model.scale, "tile": self.config["tile"],
                  "tile_overlap": self.config["tile_overlap"], "dtype": str(self._dtype).removeprefix("torch."),
                  "input_size": list(req.image.size), "width": image.width, "height": image.height}
        return GeneratedImage(image=image, params=params)
