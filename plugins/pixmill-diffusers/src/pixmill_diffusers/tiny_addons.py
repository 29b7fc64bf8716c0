"""Tiny random-weight add-ons for a tiny pipeline: a ControlNet and an IP-Adapter, built offline.

Each is derived from the pipeline folder it plugs into (``make-tiny DIR --kind controlnet --base
PIPELINE_DIR``), so its shapes always match that pipeline: a ``ControlNetModel`` for SD 1.5/SDXL
(``FluxControlNetModel`` for FLUX) copied from the denoiser, and an IP-Adapter weights file in the
layout of the real ones (``image_proj.*`` / ``ip_adapter.*`` keys) with a tiny CLIP image encoder
next to it. The parts a real add-on starts at zero (ControlNet's zero convolutions) get small random
weights, so the add-on visibly changes the images: that is what tests and smoke checks look for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IP_ADAPTER_WEIGHT_NAME = "ip-adapter.safetensors"
IP_ADAPTER_TOKENS = 4  # image tokens of a plain IP-Adapter (diffusers infers 4 from the weights)
IMAGE_ENCODER_DIM = 32


def _load_base(base: str | Path) -> Any:
    from diffusers import DiffusionPipeline

    from .base import quiet_progress_bars

    quiet_progress_bars()
    folder = Path(base)
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"{base} is not a pipeline folder: build one first (pixmill diffusers make-tiny DIR --kind sd)")
    return DiffusionPipeline.from_pretrained(str(folder))


def _randomize(modules: Any) -> None:
    """He-initialise the weights of ``modules`` and zero their biases, so a signal passes through."""
    import math

    import torch

    with torch.no_grad():
        for name, param in modules.named_parameters():
            if name.endswith("bias") or param.dim() < 2:
                param.zero_()
            else:
                param.normal_(0.0, math.sqrt(2.0 / param[0].numel()))


def make_tiny_controlnet(base: str | Path, out: str | Path, seed: int = 0) -> Path:
    """A random ControlNet for the tiny pipeline in ``base`` (SD 1.5, SDXL or FLUX), saved to ``out``."""
    import torch

    pipe = _load_base(base)
    torch.manual_seed(seed)
    if getattr(pipe, "transformer", None) is not None:
        from diffusers import FluxControlNetModel

        tcfg = pipe.transformer.config
        net = FluxControlNetModel.from_transformer(pipe.transformer, num_layers=tcfg.num_layers,
                                                   num_single_layers=tcfg.num_single_layers,
                                                   attention_head_dim=tcfg.attention_head_dim,
                                                   num_attention_heads=tcfg.num_attention_heads)
        _randomize(net.controlnet_blocks)
        _randomize(net.controlnet_single_blocks)
        _randomize(net.controlnet_x_embedder)
    else:
        from diffusers import ControlNetModel

        # The conditioning embedding downsamples 8x, like the VAE of the tiny pipelines.
        net = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(4, 8, 8, 8))
        _randomize(net.controlnet_down_blocks)
        _randomize(net.controlnet_mid_block)
        # The default init of this small stack fades the control image out; real weights do not.
        _randomize(net.controlnet_cond_embedding)
        with torch.no_grad():  # as strong as the latents it is added to, like a trained ControlNet's
            net.controlnet_cond_embedding.conv_out.weight.mul_(10.0)
    folder = Path(out)
    net.save_pretrained(str(folder))
    _readme(folder, "ControlNet", base, seed)
    return folder


def _image_encoder(seed: int) -> Any:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=32, patch_size=8, projection_dim=IMAGE_ENCODER_DIM)
    return CLIPVisionModelWithProjection(config)


def _projection(cross_attention_dim: int) -> dict[str, Any]:
    """The ``image_proj`` weights of a plain IP-Adapter: CLIP image embedding -> 4 text-like tokens."""
    from diffusers.models.embeddings import ImageProjection

    proj = ImageProjection(image_embed_dim=IMAGE_ENCODER_DIM, cross_attention_dim=cross_attention_dim,
                           num_image_text_embeds=IP_ADAPTER_TOKENS)
    return {k.replace("image_embeds", "proj"): v for k, v in proj.state_dict().items()}


def _unet_ip_layers(unet: Any) -> dict[str, Any]:
    """``{id}.to_k_ip.weight`` / ``to_v_ip`` for every cross-attention of a UNet, numbered as the
    original IP-Adapter files are (1, 3, 5...: diffusers counts self-attention in between)."""
    import torch

    cross = unet.config.cross_attention_dim
    channels = unet.config.block_out_channels
    layers: dict[str, Any] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for what in ("to_k_ip", "to_v_ip"):
            layers[f"{key_id}.{what}.weight"] = torch.randn(hidden, cross) * 0.2
        key_id += 2
    return layers


def _flux_ip_layers(transformer: Any) -> dict[str, Any]:
    """``{i}.to_k_ip.weight/bias`` / ``to_v_ip`` for each double-stream block of a FLUX transformer."""
    import torch

    cross, inner = transformer.config.joint_attention_dim, transformer.inner_dim
    layers: dict[str, Any] = {}
    for i in range(transformer.config.num_layers):
        for what in ("to_k_ip", "to_v_ip"):
            layers[f"{i}.{what}.weight"] = torch.randn(inner, cross) * 0.2
            layers[f"{i}.{what}.bias"] = torch.randn(inner) * 0.2
    return layers


def make_tiny_ip_adapter(base: str | Path, out: str | Path, seed: int = 0) -> Path:
    """A random IP-Adapter for the tiny pipeline in ``base``: ``out/ip-adapter.safetensors`` and its
    CLIP image encoder in ``out/image_encoder`` (the layout of h94/IP-Adapter's model folders)."""
    import torch
    from safetensors.torch import save_file

    pipe = _load_base(base)
    torch.manual_seed(seed)
    if getattr(pipe, "transformer", None) is not None:
        image_proj = _projection(pipe.transformer.config.joint_attention_dim)
        ip_layers = _flux_ip_layers(pipe.transformer)
    else:
        image_proj = _projection(pipe.unet.config.cross_attention_dim)
        ip_layers = _unet_ip_layers(pipe.unet)
    with torch.no_grad():
        image_proj = {k: torch.randn_like(v) * 0.2 if k.startswith("proj") else v for k, v in image_proj.items()}
    tensors = {**{f"image_proj.{k}": v.contiguous() for k, v in image_proj.items()},
               **{f"ip_adapter.{k}": v.contiguous() for k, v in ip_layers.items()}}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / IP_ADAPTER_WEIGHT_NAME))
    _image_encoder(seed).save_pretrained(str(folder / "image_encoder"))
    _readme(folder, "IP-Adapter", base, seed)
    return folder


def _readme(folder: Path, what: str, base: str | Path, seed: int) -> None:
    (folder / "README.md").write_text(
        f"Tiny random-weight {what} for the pipeline in {base}, made by `pixmill diffusers make-tiny` "
        f"(seed {seed}).\nIts effect is noise: use it to smoke-test a setup, not to make pictures.\n",
        encoding="utf-8")
