"""The options every diffusers serving shares (documented in docs/servings/*.md)."""

from __future__ import annotations

from pixmill.options import Option

DTYPES = ("bf16", "fp16", "fp32", "auto")

MODEL_OPTIONS = (
    Option("model", str, None, "hub id (black-forest-labs/FLUX.1-dev) or a local diffusers folder", required=True),
    Option("revision", str, None, "hub revision: a branch, tag or commit hash"),
    Option("cache_dir", str, None, "Hugging Face cache folder (default: the hub's own)", cache=False),
    Option("local_dir", str, None, "keep downloads in LOCAL_DIR/<org>--<name>[@revision], one folder per model",
           cache=False),
)

RUN_OPTIONS = (
    Option("dtype", str, "bf16", "weights and compute dtype (auto = bf16 on GPUs; the CPU always uses fp32)",
           choices=DTYPES),
    Option("images_per_call", int, None, "images per pipeline call (default: picked from the model and device, see "
           "docs/gpus.md)", cache=False),
    Option("num_images_per_prompt", int, None, "images per prompt when the operator does not say (default 1)"),
    Option("height", int, None, "image height in pixels, rounded to what the model accepts (default: the model's)"),
    Option("width", int, None, "image width in pixels, rounded to what the model accepts (default: the model's)"),
    Option("steps", int, None, "denoising steps (default: the model's)"),
    Option("guidance", float, None, "guidance scale (default: the model's)"),
    Option("max_sequence_length", int, None, "text tokens the T5 encoder takes; longer prompts are truncated "
           "with a warning and recorded (default: the model's)"),
    Option("lora", str, None, "LoRA weights: a folder, a .safetensors file or a hub id"),
    Option("lora_scale", float, 1.0, "strength of the LoRA weights"),
    Option("lora_weight_name", str, None, "file name of the LoRA weights inside a folder or hub repo"),
)

MEMORY_OPTIONS = (
    Option("cpu_offload", bool, False, "keep each model on the CPU until it runs (GPU only; ~half the peak memory)",
           cache=False),
    Option("sequential_offload", bool, False, "stream weights to the GPU layer by layer (GPU only; smallest memory, "
           "slowest)", cache=False),
    Option("vae_tiling", bool, False, "decode large images tile by tile (less memory; may show faint seams)"),
    Option("vae_slicing", bool, False, "decode a batch one image at a time (less memory, same pixels)", cache=False),
    Option("attention_slicing", bool, False, "compute attention in slices (less peak memory on small GPUs, a "
           "little slower; UNet models: SD 1.5, SDXL)", cache=False),
    Option("compile", bool, False, "torch.compile the denoiser (slow first batch, faster after)", cache=False),
    Option("devices", str, None, "where to run: all visible GPUs by default (one worker process each); "
           "'0,1' or 'cuda:0,cuda:1' for some; 'cpu'", cache=False),
)

COMMON_OPTIONS = (*MODEL_OPTIONS, *RUN_OPTIONS, *MEMORY_OPTIONS)

# GPU speed options of the FLUX servings (docs/servings/flux.md, "Speed"); CUDA-only ones are
# refused on the CPU with a one-line error.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
QUANTIZE = ("fp8",)
# --attention-backend NAME -> diffusers' attention dispatcher name. The first five are PyTorch's own
# kernels (nothing to install; cudnn and flash need CUDA); the last two need the flash-attn package
# (FlashAttention-2) or a FlashAttention-3 build (Hopper GPUs).
ATTENTION_BACKENDS = {"native": "native", "cudnn": "_native_cudnn", "flash": "_native_flash",
                      "efficient": "_native_efficient", "math": "_native_math", "flash-attn": "flash",
                      "flash-attn-3": "_flash_3"}
CUDA_ATTENTION = ("cudnn", "flash", "efficient", "flash-attn", "flash-attn-3")

SPEED_OPTIONS = (
    Option("compile_mode", str, None, "torch.compile mode with --compile, e.g. max-autotune-no-cudagraphs "
           "(default: torch's)", choices=COMPILE_MODES, cache=False),
    Option("fuse_qkv", bool, False, "fuse the attention's query/key/value projections into one matmul", cache=False),
    Option("channels_last_vae", bool, False, "run the VAE in channels-last memory layout", cache=False),
    Option("attention_backend", str, None, "attention kernel of the transformer: cudnn (fastest on Hopper), "
           "flash, efficient, math, native (torch's pick, the default); flash-attn / flash-attn-3 need those "
           "packages", choices=tuple(ATTENTION_BACKENDS), cache=False),
    Option("quantize", str, None, "quantize the transformer's weights: fp8 (torchao; CUDA GPUs of compute "
           "capability 8.9+, pip install torchao)", choices=QUANTIZE),
    Option("first_block_cache", float, None, "reuse the transformer's output across steps while its first "
           "block changes less than this relative amount (diffusers' First Block Cache; e.g. 0.08: faster, "
           "slightly different images)"),
)

# ControlNet and IP-Adapter: the models are the serving's; the row fields that feed them
# (--control-key, --reference-key) are the image operators'.
CONTROLNET_OPTIONS = (
    Option("controlnet", list, None, "ControlNet model(s): hub ids or local folders; several (repeat the flag "
           "or a comma list) run together, one control image each"),
    Option("controlnet_scale", list, None, "ControlNet strength: one value for all, or one per --controlnet "
           "(default 1.0)"),
)

IP_ADAPTER_OPTIONS = (
    Option("ip_adapter", str, None, "IP-Adapter weights: a hub repo (h94/IP-Adapter), a local folder or a "
           "weights file; the reference images come from the operator's --reference-key"),
    Option("ip_adapter_weight_name", str, None, "weights file inside --ip-adapter, with its subfolder "
           "(models/ip-adapter_sd15.safetensors)"),
    Option("ip_adapter_scale", float, 1.0, "IP-Adapter strength (0 = no effect)"),
    Option("ip_adapter_image_encoder", str, None, "CLIP image encoder: a hub id or folder (default: the "
           "image_encoder folder next to the weights)"),
)
