"""Tiny random-weight diffusion pipelines, built offline, for smoke tests and demos.

``make_tiny(dir, kind)`` writes a pipeline folder that ``FluxPipeline`` / ``FluxKontextPipeline`` /
``StableDiffusionPipeline`` (and the AutoPipeline classes) load with ``from_pretrained``, exactly
as they load a real checkpoint. The weights are random, so the images are noise: they prove that a
setup works end to end (loading, batching, seeds, saving), not that it draws well.

The geometry follows the real models where it matters to callers: the VAE downsamples 8x, FLUX
takes 16 latent channels packed into 64 transformer channels (sizes round to multiples of 16), and
the text encoders are CLIP + T5 with a character-level vocabulary, so any lowercase English text
tokenizes. Building one takes well under a second once torch is imported; the folder is ~1 MB.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

KINDS = ("flux", "flux-kontext", "sd", "sdxl")
# Kinds for the upscaling and refiner paths: pipeline folders, except esrgan (one weights file).
EXTRA_KINDS = ("sdxl-base", "sdxl-refiner", "sd-upscaler", "esrgan")
# Add-ons that plug into a pipeline made above: `make-tiny DIR --kind controlnet --base PIPELINE_DIR`.
ADDON_KINDS = ("controlnet", "lora", "ip-adapter")

_CHARS = list(string.ascii_lowercase + string.digits + ".,!?'-:;()")
CLIP_MAX_LENGTH = 77


def _clip_tokenizer(folder: Path) -> Any:
    """A character-level CLIP BPE tokenizer (no merges), saved to ``folder`` and loaded back."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # transformers 5 ignores vocab_file/merges_file in the constructor: load from the folder.
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=CLIP_MAX_LENGTH)


def _t5_tokenizer() -> Any:
    """A character-level Unigram T5 tokenizer built with `tokenizers` (works with transformers 4 and 5)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in _CHARS] + [("\u2581" + c, -2.5) for c in _CHARS]
    tk = Tokenizer(models.Unigram(pieces, unk_id=2))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tk.post_processor = TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)


def _clip_text_model(vocab_size: int, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                            vocab_size=vocab_size, max_position_embeddings=CLIP_MAX_LENGTH, projection_dim=32,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _flux_components(scratch: Path, guidance: bool = True) -> dict[str, Any]:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    clip_tok = _clip_tokenizer(scratch / "clip-tokenizer")
    t5_tok = _t5_tokenizer()
    t5 = T5EncoderModel(T5Config(d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2, vocab_size=len(t5_tok),
                                 relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0,
                                 eos_token_id=1))
    # joint_attention_dim = T5 d_model, pooled_projection_dim = CLIP hidden size,
    # sum(axes_dims_rope) = attention_head_dim, in_channels = 4 x VAE latent channels.
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
                                         guidance_embeds=guidance)
    # Four blocks: the real 8x downsampling, so sizes behave as with FLUX.1 (multiples of 16).
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8],
                        layers_per_block=1, latent_channels=16, norm_num_groups=4, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035, sample_size=64)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    return {"scheduler": scheduler, "vae": vae, "text_encoder": _clip_text_model(len(clip_tok)),
            "tokenizer": clip_tok, "text_encoder_2": t5, "tokenizer_2": t5_tok, "transformer": transformer}


def _sd_components(scratch: Path) -> dict[str, Any]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    tok = _clip_tokenizer(scratch / "clip-tokenizer")
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8],
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return {"vae": vae, "text_encoder": _clip_text_model(len(tok)), "tokenizer": tok, "unet": unet,
            "scheduler": scheduler, "safety_checker": None, "feature_extractor": None,
            "requires_safety_checker": False}


def build_tiny(kind: str, seed: int = 0) -> Any:
    """A tiny random-weight pipeline object of ``kind`` (see :data:`KINDS`), not saved."""
    import tempfile

    import torch

    if kind not in KINDS + EXTRA_KINDS or kind == "esrgan":
        raise ValueError(f"unknown tiny model kind {kind!r}: choose one of {', '.join(KINDS + EXTRA_KINDS[:-1])}")
    torch.manual_seed(seed)  # the same seed builds the same weights, so test images are stable
    with tempfile.TemporaryDirectory(prefix="pixmill-tiny-") as scratch:
        if kind in ("sdxl", "sdxl-base", "sdxl-refiner"):  # sdxl-base: the sdxl a refiner pairs with
            return build_tiny_sdxl(Path(scratch), refiner=kind == "sdxl-refiner")
        if kind == "sd-upscaler":
            return build_tiny_sd_upscaler(Path(scratch))
        if kind == "flux":
            from diffusers import FluxPipeline

            return FluxPipeline(**_flux_components(Path(scratch)))
        if kind == "flux-kontext":
            from diffusers import FluxKontextPipeline

            return FluxKontextPipeline(**_flux_components(Path(scratch)))
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(**_sd_components(Path(scratch)))


def make_tiny(folder: str | Path, kind: str = "flux", seed: int = 0) -> Path:
    """Build a tiny random-weight pipeline of ``kind`` and save it to ``folder`` (created).

    The folder then loads with ``FluxPipeline.from_pretrained(folder)`` (or the class of its kind)
    and works as ``--model folder`` with the matching serving. The estimator kinds (``depth``,
    ``pose``, ``person-detector``) are transformers models for ``control-image``, see
    :mod:`pixmill_diffusers.tiny_estimators`.
    """
    from .base import quiet_progress_bars
    from .tiny_estimators import ESTIMATOR_KINDS, make_tiny_estimator

    if kind == "esrgan":
        return make_tiny_esrgan(folder, "compact", 4, seed)
    if kind in ESTIMATOR_KINDS:
        return make_tiny_estimator(folder, kind, seed)
    quiet_progress_bars()
    folder = Path(folder)
    pipe = build_tiny(kind, seed)
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(folder))
    (folder / "README.md").write_text(
        f"Tiny random-weight `{kind}` pipeline made by `pixmill diffusers make-tiny` (seed {seed}).\n"
        "Its images are noise: use it to smoke-test a setup, not to make pictures.\n", encoding="utf-8")
    return folder


def make_tiny_lora(model_folder: str | Path, out_folder: str | Path, rank: int = 4, seed: int = 0) -> Path:
    """Save random LoRA weights for the denoiser of a tiny pipeline (UNet or FLUX transformer).

    The weights are not zero, so loading them visibly changes the images.
    """
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from .base import quiet_progress_bars

    quiet_progress_bars()
    pipe = DiffusionPipeline.from_pretrained(str(model_folder))
    torch.manual_seed(seed)
    name = "transformer" if getattr(pipe, "transformer", None) is not None else "unet"
    denoiser = getattr(pipe, name)
    denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(denoiser))
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(out), **{f"{name}_lora_layers": layers})
    return out


# -- kinds for the upscaling, refiner and GAN paths -------------------------------------------------
# Kept apart from the builders above: an SDXL base is built here for the refiner handoff.

def _sdxl_unet(cross_attention_dim: int, time_ids: int, pooled_dim: int) -> Any:
    """A tiny SDXL UNet: ``time_ids`` micro-conditioning numbers (6 for the base, 5 for the refiner,
    which adds an aesthetic score instead of the crop target size)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=time_ids * 8 + pooled_dim,
                                cross_attention_dim=cross_attention_dim, norm_num_groups=4)


def _sd_vae(latent_channels: int = 4, blocks: int = 4) -> Any:
    """An SD-style VAE that downsamples ``2 ** (blocks - 1)`` times."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * blocks,
                         up_block_types=["UpDecoderBlock2D"] * blocks, block_out_channels=[8] * blocks,
                         layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4, sample_size=64)


def _sdxl_scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  timestep_spacing="leading", steps_offset=1)


def build_tiny_sdxl(scratch: Path, refiner: bool = False) -> Any:
    """A tiny SDXL base (two CLIP encoders, 8x VAE) or refiner (the second encoder only, aesthetic
    score conditioning), as StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline.

    The refiner is built right after a base with the same seed shares its VAE and second text
    encoder weights, as the real SDXL 1.0 pair does.
    """
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    tok = _clip_tokenizer(scratch / "clip-tokenizer")
    vae = _sd_vae()
    text_encoder_2 = _clip_text_model(len(tok), projection=True)
    if refiner:
        unet = _sdxl_unet(cross_attention_dim=32, time_ids=5, pooled_dim=32)
        return StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=None, text_encoder_2=text_encoder_2,
                                                tokenizer=None, tokenizer_2=tok, unet=unet,
                                                scheduler=_sdxl_scheduler(), requires_aesthetics_score=True,
                                                force_zeros_for_empty_prompt=False)
    unet = _sdxl_unet(cross_attention_dim=64, time_ids=6, pooled_dim=32)
    return StableDiffusionXLPipeline(vae=vae, text_encoder=_clip_text_model(len(tok)), text_encoder_2=text_encoder_2,
                                     tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=_sdxl_scheduler())


def build_tiny_sd_upscaler(scratch: Path) -> Any:
    """A tiny StableDiffusionUpscalePipeline: a 4x VAE and a UNet that takes the noised low-res image
    (3 channels) beside the latents (4), conditioned on the noise level, as the SD x4 upscaler."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel

    tok = _clip_tokenizer(scratch / "clip-tokenizer")
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=7,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=4, num_class_embeds=400)
    low_res = DDPMScheduler(beta_schedule="scaled_linear")
    scheduler = DDIMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear",
                              beta_start=0.0001, beta_end=0.02, clip_sample=False, set_alpha_to_one=False)
    # The VAE is built last and its scaling factor set as the real upscaler's (0.08333).
    vae = _sd_vae(blocks=3)
    vae.register_to_config(scaling_factor=0.08333)
    return StableDiffusionUpscalePipeline(vae=vae, text_encoder=_clip_text_model(len(tok)), tokenizer=tok, unet=unet,
                                          low_res_scheduler=low_res, scheduler=scheduler, max_noise_level=350)


ESRGAN_ARCHES = ("rrdb", "compact")


def esrgan_state_dict(arch: str = "compact", scale: int = 4, seed: int = 0) -> dict[str, Any]:
    """Random weights in the layout of a Real-ESRGAN release file, tiny.

    ``compact``: SRVGGNetCompact (``realesr-general-x4v3``'s family: ``body.N`` convs and PReLUs,
    pixel shuffle); ``rrdb``: RRDBNet (``RealESRGAN_x4plus``'s family: ``conv_first``, ``body.N.rdbM``,
    ``conv_up1/2``, ``conv_hr``, ``conv_last``). Loaders detect the architecture and scale from
    these keys and shapes, as they do for the real files.
    """
    import torch

    if arch not in ESRGAN_ARCHES:
        raise ValueError(f"unknown GAN upscaler architecture {arch!r}: choose one of {', '.join(ESRGAN_ARCHES)}")
    gen = torch.Generator().manual_seed(seed)

    def conv(out_ch: int, in_ch: int, prefix: str) -> dict[str, Any]:
        weight = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * (1.0 / (in_ch * 9) ** 0.5)
        return {f"{prefix}.weight": weight, f"{prefix}.bias": torch.zeros(out_ch)}

    feat, state = 8, {}
    if arch == "compact":
        n_conv = 2
        state.update(conv(feat, 3, "body.0"))
        state["body.1.weight"] = torch.full((feat,), 0.25)
        for i in range(n_conv):
            state.update(conv(feat, feat, f"body.{2 + 2 * i}"))
            state[f"body.{3 + 2 * i}.weight"] = torch.full((feat,), 0.25)
        state.update(conv(3 * scale * scale, feat, f"body.{2 + 2 * n_conv}"))
        return state
    if scale not in (2, 4):
        raise ValueError("the tiny rrdb upscaler is x2 or x4")
    grow = 32  # loaders take the growth channels as fixed, as in every released RRDBNet
    # Real-ESRGAN x2 models unshuffle the input 2x first (12 input channels), then upscale 4x.
    state.update(conv(feat, 3 * (4 if scale == 2 else 1), "conv_first"))
    for r in (1, 2, 3):
        for c in range(1, 6):
            out_ch = feat if c == 5 else grow
            state.update(conv(out_ch, feat + (c - 1) * grow, f"body.0.rdb{r}.conv{c}"))
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        state.update(conv(feat, feat, name))
    state.update(conv(3, feat, "conv_last"))
    return state


def make_tiny_esrgan(path: str | Path, arch: str = "compact", scale: int = 4, seed: int = 0) -> Path:
    """Write a tiny random-weight GAN upscaler file (``.pth`` or ``.safetensors`` by suffix)."""
    import torch

    path = Path(path)
    if path.suffix not in (".pth", ".safetensors"):
        path = path / f"tiny-{arch}-x{scale}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = esrgan_state_dict(arch, scale, seed)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"params": state}, str(path))  # Real-ESRGAN's release files nest under "params"
    return path
