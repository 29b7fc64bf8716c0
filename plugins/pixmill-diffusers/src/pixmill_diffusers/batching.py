"""How many images one pipeline call makes when the user does not say (``images_per_call`` unset).

The rule, by device (documented in docs/gpus.md, "Images per call"):

- **CPU**: as many images as fit a budget of about one megapixel per call (4 at 512x512, 16 at
  256x256 capped to 8, 1 at 1024x1024). Measured on a 2-core machine: batched calls of the tiny
  FLUX are several times faster per image than one image per call, because the fixed cost of a
  call (text encoding, scheduler, Python) is shared and the matrix kernels get larger.
- **CUDA GPU**: what fits the memory left after the weights: ``(GPU memory - weights - 2 GiB) /
  per-image working memory``, with the per-image working memory taken as one twelfth of the
  weights (at least 1 GiB) per megapixel, capped at 4 images per call (8 below 512x512), where a
  large GPU is already busy with one image. CPU offload keeps one image per call.
- Anything else (mps): one image per call.

Weights are the size of the checkpoint's files on disk; a hub model not downloaded yet counts as
unknown, which gives one image per call on a GPU.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

log = logging.getLogger("pixmill.diffusers")

GiB = 1 << 30
CPU_PIXEL_BUDGET = 1024 * 1024
GPU_HEADROOM = 2 * GiB
MAX_PER_CALL = 8
GPU_MAX_LARGE = 4  # at 512x512 and above
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


def images_per_call(device: str, pixels: int, weights: int | None, gpu_memory: int | None,
                    offload: bool = False) -> int:
    """The rule above, for one image of ``pixels`` pixels on ``device``."""
    pixels = max(1, pixels)
    if device == "cpu":
        return max(1, min(MAX_PER_CALL, CPU_PIXEL_BUDGET // pixels))
    if not device.startswith("cuda") or offload or weights is None or gpu_memory is None:
        return 1
    per_image = max(GiB, weights // 12) * pixels / (1024 * 1024)
    room = gpu_memory - weights - GPU_HEADROOM
    cap = GPU_MAX_LARGE if pixels >= 512 * 512 else MAX_PER_CALL
    return max(1, min(cap, int(room // per_image)))


def weights_size(folder: str | Path) -> int | None:
    """Bytes of weight files under a checkpoint folder, or None when it is not a local folder."""
    root = Path(folder)
    if not root.is_dir():
        return None
    return sum(p.stat().st_size for p in root.rglob("*") if p.suffix in _WEIGHT_SUFFIXES and p.is_file())


def gpu_memory(device: str) -> int | None:
    """Total memory of a CUDA device, without creating a CUDA context in a process that has none
    (the parent of the GPU workers): torch when it is already initialised, else nvidia-smi."""
    import torch

    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if torch.cuda.is_initialized():
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.split()
        return int(float(out[index]) * (1 << 20))  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        log.debug("cannot read the memory of %s: one image per call", device)
        return None
