"""Images per call picked from the model and device, and the FLUX speed options that run on a CPU
(fused QKV, channels-last VAE, attention kernel, First Block Cache, compile mode); the CUDA-only ones skip here."""

from __future__ import annotations

import pytest
from pixmill.errors import ConfigError
from pixmill.serving import ImageRequest
from pixmill_diffusers.batching import GiB, images_per_call


def test_the_rule_by_device_size_and_memory():
    assert images_per_call("cpu", 64 * 64, None, None) == 8
    assert images_per_call("cpu", 512 * 512, None, None) == 4
    assert images_per_call("cpu", 1024 * 1024, None, None) == 1
    # FLUX.1-dev (~32 GiB of files) on an 80 GiB GPU at 1024x1024: ~2.7 GiB per image, capped at 4.
    assert images_per_call("cuda:0", 1024 * 1024, 32 * GiB, 80 * GiB) == 4
    assert images_per_call("cuda:0", 1024 * 1024, 32 * GiB, 40 * GiB) == 2
    assert images_per_call("cuda:0", 1024 * 1024, 32 * GiB, 24 * GiB) == 1  # does not even fit: 1
    assert images_per_call("cuda:0", 1024 * 1024, 32 * GiB, 80 * GiB, offload=True) == 1
    assert images_per_call("cuda:0", 1024 * 1024, None, 80 * GiB) == 1  # weights unknown
    assert images_per_call("mps", 64 * 64, GiB, None) == 1


def test_flux_serving_and_operator_batch_by_the_rule(models):
    from pixmill.ops.images import GenerateImages
    from pixmill_diffusers.flux import FluxServing

    small = FluxServing(model=str(models["flux"]), width=64, height=64, devices="cpu")
    assert small.images_per_call() == 8
    assert GenerateImages(serving=small).batch_size == 8
    assert GenerateImages(serving=small, images_per_prompt=2).batch_size == 4
    assert FluxServing(model=str(models["flux"]), devices="cpu").images_per_call() == 1  # 1024x1024 default
    assert FluxServing(model=str(models["flux"]), devices="cpu", width=64, height=64,
                       images_per_call=3).images_per_call() == 3  # the user's choice wins


def _flux(models, **options):
    from pixmill_diffusers.flux import FluxServing

    serving = FluxServing(model=str(models["flux"]), width=64, height=64, steps=4, devices="cpu", **options)
    serving.check()
    serving.load()
    return serving


def _image(serving):
    import numpy as np

    out = serving.generate([ImageRequest("a red fox in the snow", [7])])
    return np.asarray(out[0][0].image, dtype=np.int16), out[0][0].params


def test_fused_qkv_and_channels_last_vae_keep_the_pixels(models):
    import torch

    eager, _ = _image(_flux(models))
    fast = _flux(models, fuse_qkv=True, channels_last_vae=True)
    attention = [m for m in fast.pipe.transformer.modules() if hasattr(m, "fused_projections")]
    assert attention and all(m.fused_projections for m in attention)
    assert fast.pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    image, params = _image(fast)
    assert abs(image - eager).max() <= 2
    assert "fuse_qkv" not in params  # speed-only options are not provenance


def test_attention_backend_reaches_every_attention_module(models):
    eager, _ = _image(_flux(models))
    serving = _flux(models, attention_backend="math")
    processors = [m.processor for m in serving.pipe.transformer.modules() if hasattr(m, "processor")]
    assert processors and {p._attention_backend.value for p in processors} == {"_native_math"}
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    assert _AttentionBackendRegistry.get_active_backend()[0].value == "native", "other models keep the default kernel"
    image, params = _image(serving)
    assert abs(image - eager).max() <= 2  # another kernel, the same attention
    assert "attention_backend" not in params  # speed-only: not provenance


def test_first_block_cache_records_itself_and_stays_close_to_eager(models):
    eager, _ = _image(_flux(models))
    serving = _flux(models, first_block_cache=0.5)
    assert serving.pipe.transformer.is_cache_enabled
    cached, params = _image(serving)
    assert params["first_block_cache"] == 0.5
    # The quality cost, as the benchmark reports it: mean absolute difference in 0..255 levels.
    assert abs(cached - eager).mean() < 64


def test_compile_mode_reaches_torch_compile(models, monkeypatch):
    monkeypatch.setenv("PIXMILL_COMPILE_BACKEND", "eager")  # no C++ toolchain needed on the CPU
    serving = _flux(models, compile=True, compile_mode="max-autotune-no-cudagraphs")
    image, _ = _image(serving)
    assert image.shape == (64, 64, 3)


def test_fp8_is_refused_on_the_cpu_before_any_work(models):
    from pixmill_diffusers.flux import FluxServing

    with pytest.raises(ConfigError, match="--quantize fp8 needs a CUDA GPU"):
        FluxServing(model=str(models["flux"]), devices="cpu", quantize="fp8").check()
    with pytest.raises(ConfigError, match="--attention-backend cudnn needs a CUDA GPU"):
        FluxServing(model=str(models["flux"]), devices="cpu", attention_backend="cudnn").check()
    with pytest.raises(ConfigError, match="outside 0..1"):
        FluxServing(model=str(models["flux"]), devices="cpu", first_block_cache=3).check()


def _cuda_fp8() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


@pytest.mark.skipif(not _cuda_fp8(), reason="needs a CUDA GPU of compute capability 8.9+")
def test_fp8_weights_on_a_gpu(models):
    pytest.importorskip("torchao")
    from pixmill_diffusers.flux import FluxServing

    serving = FluxServing(model=str(models["flux"]), width=64, height=64, steps=2, devices="cuda:0",
                          quantize="fp8")
    serving.load()
    out = serving.generate([ImageRequest("a red fox", [1])])
    assert out[0][0].params["quantize"] == "fp8"
