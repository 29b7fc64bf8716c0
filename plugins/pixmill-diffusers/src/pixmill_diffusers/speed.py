"""GPU speed options of the FLUX servings: fused QKV projections, a channels-last VAE, the attention
kernel, fp8 weights through torchao, and diffusers' First Block Cache. ``compile_mode`` is applied with ``--compile``
(see :meth:`DiffusersServing._compile`). Each is applied once, after the pipeline is on its device."""

from __future__ import annotations

import logging
from typing import Any, Callable

from pixmill.errors import ConfigError

from .options import ATTENTION_BACKENDS, CUDA_ATTENTION

log = logging.getLogger("pixmill.diffusers")

# Provenance of the options that change pixels (the others only change speed).
PIXEL_OPTIONS = ("quantize", "first_block_cache")


def check_speed_options(config: dict[str, Any], devices: Callable[[], list[str]]) -> None:
    """Refuse, before any work, what cannot run where the serving runs (``devices`` is asked only
    when an option needs CUDA: finding the devices imports torch)."""
    def off_cuda() -> bool:
        return any(not d.startswith("cuda") for d in devices())

    if config.get("quantize") == "fp8" and off_cuda():
        raise ConfigError("--quantize fp8 needs a CUDA GPU (compute capability 8.9+: Ada, Hopper or newer)",
                          "drop --quantize on this machine, or run on such a GPU with --devices")
    backend = config.get("attention_backend")
    if backend in CUDA_ATTENTION and off_cuda():
        raise ConfigError(f"--attention-backend {backend} needs a CUDA GPU",
                          "drop it on this machine (or use math / native), or run on a GPU with --devices")
    threshold = config.get("first_block_cache")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError(f"--first-block-cache {threshold} is outside 0..1",
                          "give the relative change below which a step is skipped, e.g. 0.08")


def apply_speed_options(pipe: Any, config: dict[str, Any], device: str, denoiser: str) -> None:
    module = getattr(pipe, denoiser)
    if config.get("fuse_qkv"):
        module.fuse_qkv_projections()
    if config.get("channels_last_vae"):
        import torch

        pipe.vae.to(memory_format=torch.channels_last)
    if config.get("attention_backend"):
        set_attention_backend(module, config["attention_backend"])
    if config.get("quantize") == "fp8":
        quantize_fp8(module, device)
    if config.get("first_block_cache") is not None:
        from diffusers import FirstBlockCacheConfig

        module.enable_cache(FirstBlockCacheConfig(threshold=float(config["first_block_cache"])))
    applied = [k for k in ("fuse_qkv", "channels_last_vae", "attention_backend", "quantize", "first_block_cache")
               if config.get(k)]
    if applied:
        log.info("speed options on %s: %s", denoiser, ", ".join(applied))


def set_attention_backend(module: Any, backend: str) -> None:
    """Route the module's attention through one of diffusers' attention kernels. Only this module's:
    diffusers also makes the kernel the process-wide default for every other model, which another
    serving in the same process (or a later pipeline) must not inherit, so that default is put back."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry as registry

    default, _ = registry.get_active_backend()
    try:
        module.set_attention_backend(ATTENTION_BACKENDS[backend])
    except RuntimeError as exc:  # diffusers names the missing package
        raise ConfigError(f"--attention-backend {backend}: {str(exc).splitlines()[0]}",
                          "install what it names, or choose cudnn / flash (PyTorch's own kernels)") from None
    finally:
        registry.set_active_backend(default)


def quantize_fp8(module: Any, device: str) -> None:
    """fp8 weights and dynamic fp8 activations for every linear layer (torchao)."""
    import torch

    if not device.startswith("cuda") or torch.cuda.get_device_capability(device) < (8, 9):
        raise ConfigError(f"--quantize fp8 needs a CUDA GPU of compute capability 8.9+, not {device}",
                          "drop --quantize, or run on an Ada/Hopper (or newer) GPU")
    try:
        from torchao.quantization import quantize_
    except ImportError:
        raise ConfigError("--quantize fp8 needs torchao", "pip install torchao") from None
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig as Fp8
    except ImportError:  # torchao before 0.10
        from torchao.quantization import float8_dynamic_activation_float8_weight as Fp8
    quantize_(module, Fp8())
