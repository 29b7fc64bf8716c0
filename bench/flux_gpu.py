"""Seconds per FLUX.1-dev image at 1024x1024, 28 steps, without downloading any weights.

The FLUX.1-dev transformer (19 double + 38 single blocks, 24 heads x 128), the T5-XXL and CLIP-L
text encoders and the 16-channel FLUX VAE are built from their real configs with random weights,
in bf16 on the GPU: the arithmetic is the real model's, so the timings are too (the images are
noise). Prints one comparable line per variant:

- plain diffusers: FluxPipeline called in a loop
- pixmill eager: the generate-images operator over the flux serving (seeds, provenance, PNGs)
- pixmill compile: the same with ``compile`` (regional torch.compile of the transformer)
- pixmill batch 1/2/4: images per pipeline call

    python bench/flux_gpu.py                 # needs a CUDA GPU with ~40 GB free
    python bench/flux_gpu.py --tiny          # tiny configs on the CPU: checks the script itself
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


def pixmill_operator(pipe: Any, size: int, steps: int, device: str, dtype: str, compile: bool = False) -> Any:
    """The generate-images operator over a flux serving that uses ``pipe`` (already on ``device``)."""
    from pixmill.ops.images import GenerateImages
    from pixmill_diffusers.flux import FluxServing

    serving = FluxServing(model="random-weights/FLUX.1-dev-config", width=size, height=size, steps=steps,
                          compile=compile, devices=device)
    serving._pipe, serving._device, serving._dtype_name = pipe, device, dtype  # no weights to load
    pipe.set_progress_bar_config(disable=True)
    if compile:
        serving._compile(pipe)
    return GenerateImages(serving=serving)


def time_pixmill(op: Any, prompts: list[str], batch: int, device: str, folder: Path) -> float:
    from pixmill.context import StepContext

    ctx = StepContext(run_dir=folder, step_dir=folder / f"b{batch}", input_dir=folder)
    rows = [{"id": str(i), "prompt": p} for i, p in enumerate(prompts)]
    sync(device)
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        outcomes = op.process(rows[start:start + batch], ctx)
        assert all(isinstance(o, dict) for o in outcomes), outcomes
    sync(device)
    return (time.perf_counter() - started) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="seconds per FLUX.1-dev image (random weights)")
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (checks the script)")
    parser.add_argument("--images", type=int, default=None, help="images per variant (default 8, tiny 8)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile variant")
    args = parser.parse_args()
    import torch

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
              f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    n = args.images or 8
    prompts = [f"a photo of object number {i}, detailed, studio light" for i in range(n)]
    label = f"{size}x{size}, {steps} steps, {dtype}, {device}"

    def report(name: str, seconds: float) -> None:
        print(f"{name:<22} {seconds:8.3f} s/image   ({label})", flush=True)

    pipe.set_progress_bar_config(disable=True)
    time_plain(pipe, prompts[:1], size, steps, device)  # warm-up: kernels, allocator
    report("plain diffusers", time_plain(pipe, prompts, size, steps, device))
    with tempfile.TemporaryDirectory(prefix="pixmill-flux-bench-") as tmp:
        folder = Path(tmp)
        op = pixmill_operator(pipe, size, steps, device, dtype)
        report("pixmill eager", time_pixmill(op, prompts, 1, device, folder))
        for batch in (2, 4):
            time_pixmill(op, prompts[:batch], batch, device, folder)  # warm-up at this shape
            report(f"pixmill batch {batch}", time_pixmill(op, prompts, batch, device, folder))
        if not args.no_compile:
            op = pixmill_operator(pipe, size, steps, device, dtype, compile=True)
            started = time.perf_counter()
            time_pixmill(op, prompts[:1], 1, device, folder)
            print(f"# compile warm-up (first batch): {time.perf_counter() - started:.1f}s")
            report("pixmill compile", time_pixmill(op, prompts, 1, device, folder))
        if device.startswith("cuda"):
            print(f"# peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
