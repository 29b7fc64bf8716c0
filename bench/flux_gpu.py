"""Seconds per FLUX.1-dev image at 1024x1024, 28 steps, without downloading any weights.

The FLUX.1-dev transformer (19 double + 38 single blocks, 24 heads x 128), the T5-XXL and CLIP-L
text encoders and the 16-channel FLUX VAE are built from their real configs with random weights,
in bf16 on the GPU: the arithmetic is the real model's, so the timings are too (the images are
noise). Prints one table, a row per variant, with seconds per image, the ratio to plain diffusers,
peak GPU memory, and the mean absolute pixel difference (0..255) of the first image against pixmill
eager, so the quality cost of an option is visible next to its speed:

- plain diffusers: FluxPipeline called in a loop
- pixmill eager: the generate-images operator over the flux serving (seeds, provenance, PNGs)
- pixmill batch 2 / 4: images per pipeline call
- each speed option of the flux serving alone: --fuse-qkv, --channels-last-vae,
  --first-block-cache 0.08, --attention-backend cudnn
- pixmill --compile (regional torch.compile), then --compile-mode max-autotune-no-cudagraphs,
  reduce-overhead and max-autotune (the last two with CUDA graphs), then --compile with every exact
  speed option (fused QKV, channels-last VAE, cuDNN attention)
- --quantize fp8 (torchao) with --compile: CUDA GPUs of compute capability 8.9+ only

    python bench/flux_gpu.py                 # needs a CUDA GPU with ~40 GB free (H100/H200: ~15 min)
    python bench/flux_gpu.py --tiny          # tiny configs on the CPU: checks the script itself
    python bench/flux_gpu.py --only eager,fp8   # a subset of the variants (names as in the table)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                   num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                   guidance_embeds=True, axes_dims_rope=[16, 56, 56])
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
              feed_forward_proj="gated-gelu", is_gated_act=True, dense_act_fn="gelu_new",
              relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
              pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              max_position_embeddings=77, vocab_size=49408, projection_dim=768, hidden_act="quick_gelu",
              bos_token_id=0, eos_token_id=2, pad_token_id=1)
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
           latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
           use_quant_conv=False, use_post_quant_conv=False)


def build_real(device: str) -> Any:
    """FluxPipeline with the real FLUX.1-dev architecture and random bf16 weights, built on ``device``."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from pixmill_diffusers.tiny import _clip_tokenizer, _t5_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build straight in bf16: 12B params in fp32 would not fit
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(**TRANSFORMER)
            t5 = T5EncoderModel(T5Config(**T5_XXL))
            clip = CLIPTextModel(CLIPTextConfig(**CLIP_L))
            vae = AutoencoderKL(**VAE)
    finally:
        torch.set_default_dtype(old)
    with tempfile.TemporaryDirectory() as scratch:
        # Tokenizers only turn text into ids; the real vocabularies' ids would cost the same.
        clip_tok = _clip_tokenizer(Path(scratch) / "clip")
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5,
                        tokenizer_2=_t5_tokenizer(), transformer=transformer).to(device, torch.bfloat16)


def build_tiny() -> Any:
    from pixmill_diffusers.tiny import build_tiny as tiny

    return tiny("flux")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_plain(pipe: Any, prompts: list[str], size: int, steps: int, device: str) -> float:
    import torch

    sync(device)
    started = time.perf_counter()
    for i, prompt in enumerate(prompts):
        with torch.inference_mode():
            pipe(prompt=prompt, height=size, width=size, num_inference_steps=steps, guidance_scale=3.5,
                 generator=torch.Generator("cpu").manual_seed(i)).images[0]
    sync(device)
    return (time.perf_counter() - started) / len(prompts)


def pixmill_operator(pipe: Any, size: int, steps: int, device: str, dtype: str, batch: int = 1,
                     **speed: Any) -> Any:
    """The generate-images operator over a flux serving that uses ``pipe`` (already on ``device``),
    with the serving's own speed options applied to it (undo them with :func:`undo_speed`)."""
    from pixmill.ops.images import GenerateImages
    from pixmill_diffusers.flux import FluxServing

    serving = FluxServing(model="random-weights/FLUX.1-dev-config", width=size, height=size, steps=steps,
                          devices=device, images_per_call=batch, **speed)
    serving._pipe, serving._device, serving._dtype_name = pipe, device, dtype  # no weights to load
    pipe.set_progress_bar_config(disable=True)
    serving.speed_up(pipe, device)
    if speed.get("compile"):
        serving._compile(pipe)
    return GenerateImages(serving=serving)


def undo_speed(pipe: Any, speed: dict[str, Any]) -> None:
    """Put the shared pipeline back as it was before a variant (fp8 cannot be undone: it runs last)."""
    import torch

    transformer = pipe.transformer
    if speed.get("fuse_qkv"):
        transformer.unfuse_qkv_projections()
    if speed.get("channels_last_vae"):
        pipe.vae.to(memory_format=torch.contiguous_format)
    if speed.get("first_block_cache") is not None:
        transformer.disable_cache()
    if speed.get("attention_backend"):
        transformer.reset_attention_backend()
    if speed.get("compile"):
        for module in transformer.modules():  # drop the compiled wrappers; the weights are untouched
            if getattr(module, "_compiled_call_impl", None) is not None:
                module._compiled_call_impl = None
        torch._dynamo.reset()


def time_pixmill(op: Any, prompts: list[str], batch: int, device: str, folder: Path) -> tuple[float, Any]:
    """Seconds per image, and the first image's pixels."""
    import numpy as np
    from PIL import Image
    from pixmill.context import StepContext
    from pixmill.fields import GENERATED_IMAGES

    ctx = StepContext(run_dir=folder, step_dir=folder / f"b{batch}-{time.monotonic_ns()}", input_dir=folder)
    rows = [{"id": str(i), "prompt": p} for i, p in enumerate(prompts)]
    sync(device)
    started = time.perf_counter()
    first = None
    for start in range(0, len(rows), batch):
        outcomes = op.process(rows[start:start + batch], ctx)
        assert all(isinstance(o, dict) for o in outcomes), outcomes
        first = first or outcomes[0][GENERATED_IMAGES][0]
    sync(device)
    seconds = (time.perf_counter() - started) / len(rows)
    with Image.open(folder / first) as im:
        return seconds, np.asarray(im.convert("RGB"), dtype=np.int16)


# name -> (images per call, serving speed options)
VARIANTS: dict[str, tuple[int, dict[str, Any]]] = {
    "eager": (1, {}),
    "batch2": (2, {}),
    "batch4": (4, {}),
    "fuse-qkv": (1, {"fuse_qkv": True}),
    "channels-last-vae": (1, {"channels_last_vae": True}),
    "first-block-cache": (1, {"first_block_cache": 0.08}),
    "cudnn-attention": (1, {"attention_backend": "cudnn"}),
    "compile": (1, {"compile": True}),
    "compile-max-autotune": (1, {"compile": True, "compile_mode": "max-autotune-no-cudagraphs"}),
    # CUDA graphs: one launch per compiled block instead of one per kernel (not yet measured on a GPU)
    "compile-cudagraphs": (1, {"compile": True, "compile_mode": "reduce-overhead"}),
    "compile-max-autotune-cudagraphs": (1, {"compile": True, "compile_mode": "max-autotune"}),
    "compile-all": (1, {"compile": True, "fuse_qkv": True, "channels_last_vae": True, "attention_backend": "cudnn"}),
    "fp8": (1, {"quantize": "fp8", "compile": True}),  # last: quantized weights stay quantized
}


def fp8_ready(device: str) -> str | None:
    """Why fp8 cannot run here, or None."""
    import importlib.util

    import torch

    if not device.startswith("cuda"):
        return "needs a CUDA GPU"
    if torch.cuda.get_device_capability() < (8, 9):
        return "needs compute capability 8.9+"
    if importlib.util.find_spec("torchao") is None:
        return "needs torchao (pip install torchao)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description="seconds per FLUX.1-dev image (random weights)")
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (checks the script)")
    parser.add_argument("--images", type=int, default=None, help="images per variant (default 8)")
    parser.add_argument("--only", default=None, help="comma list of variants (plain always runs): "
                        + ", ".join(VARIANTS))
    parser.add_argument("--no-compile", action="store_true", help="skip the variants that compile")
    args = parser.parse_args()
    import torch
    from pixmill_diffusers.options import CUDA_ATTENTION

    if args.tiny:
        device, size, steps, dtype, pipe = "cpu", 64, 2, "float32", build_tiny()
        os.environ.setdefault("PIXMILL_COMPILE_BACKEND", "eager")  # no C++ toolchain needed on CPU
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU: run with --tiny to check the script on the CPU")
        device, size, steps, dtype = "cuda", 1024, 28, "bfloat16"
        started = time.perf_counter()
        pipe = build_real(device)
        print(f"# built FLUX.1-dev-sized pipeline in {time.perf_counter() - started:.0f}s; "
              f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    n = args.images or 8
    prompts = [f"a photo of object number {i}, detailed, studio light" for i in range(n)]
    wanted = [v.strip() for v in args.only.split(",")] if args.only else list(VARIANTS)
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    cuda = device.startswith("cuda")

    def peak() -> str:
        return f"{torch.cuda.max_memory_allocated() / 2**30:6.1f}" if cuda else "     -"

    def reset_peak() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    print(f"# {size}x{size}, {steps} steps, {dtype}, {device}, {n} images per variant")
    print(f"{'variant':<30} {'s/image':>8} {'x plain':>8} {'peak GiB':>8} {'mean |diff|':>11}", flush=True)
    pipe.set_progress_bar_config(disable=True)
    time_plain(pipe, prompts[:1], size, steps, device)  # warm-up: kernels, allocator
    reset_peak()
    plain = time_plain(pipe, prompts, size, steps, device)
    print(f"{'plain diffusers':<30} {plain:8.3f} {1.0:8.2f} {peak()} {'-':>11}", flush=True)
    eager_pixels = None
    with tempfile.TemporaryDirectory(prefix="pixmill-flux-bench-") as tmp:
        folder = Path(tmp)
        for name in wanted:
            batch, speed = VARIANTS[name]
            if speed.get("compile") and args.no_compile:
                continue
            if speed.get("quantize") and fp8_ready(device):
                print(f"{'pixmill ' + name:<30} {'skipped: ' + fp8_ready(device)}", flush=True)
                continue
            if speed.get("attention_backend") in CUDA_ATTENTION and not cuda:
                print(f"{'pixmill ' + name:<30} skipped: the {speed['attention_backend']} kernel needs CUDA", flush=True)
                continue
            try:
                seconds, pixels, warm = run_variant(pipe, prompts, size, steps, device, dtype, batch, speed, folder,
                                                    reset_peak)
            except Exception as exc:  # one variant's failure (a missing kernel, out of memory) spares the rest
                print(f"{'pixmill ' + name:<30} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                      flush=True)
                undo_speed(pipe, speed)
                continue
            if eager_pixels is None:  # the first variant (eager, unless --only skips it) is the reference
                eager_pixels = pixels
            diff = float(abs(pixels - eager_pixels).mean())
            note = f"   (warm-up {warm:.0f}s)" if warm else ""
            print(f"{'pixmill ' + name:<30} {seconds:8.3f} {seconds / plain:8.2f} {peak()} {diff:11.2f}{note}",
                  flush=True)
            undo_speed(pipe, speed)


def run_variant(pipe: Any, prompts: list[str], size: int, steps: int, device: str, dtype: str, batch: int,
                speed: dict[str, Any], folder: Path, reset_peak: Any) -> tuple[float, Any, float]:
    """Seconds per image, the first image's pixels, and the warm-up seconds (compiled variants only:
    the others run on kernels that plain diffusers already warmed)."""
    op = pixmill_operator(pipe, size, steps, device, dtype, batch, **speed)
    warm = 0.0
    if speed.get("compile"):
        started = time.perf_counter()
        time_pixmill(op, prompts[:batch], batch, device, folder)  # compiles at this shape
        warm = time.perf_counter() - started
    reset_peak()
    seconds, pixels = time_pixmill(op, prompts, batch, device, folder)
    return seconds, pixels, warm

if __name__ == "__main__":
    main()
