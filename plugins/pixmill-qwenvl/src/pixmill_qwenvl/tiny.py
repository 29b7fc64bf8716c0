"""Random-weight Qwen2.5-VL models built offline, for smoke tests, demos and benchmarks.

``build_tiny_qwen_vl(DIR)`` writes a complete model folder (config, safetensors weights, a byte-level
BPE tokenizer with the Qwen special tokens and chat template, the image processor) that loads through
the real ``Qwen2_5_VLForConditionalGeneration.from_pretrained(DIR)`` path, in well under a second.
Its answers are random tokens: it tests plumbing, never quality. Presets:

- ``tiny``: hidden size 32, 2 layers, 2-block vision tower (~0.1M parameters; CPU tests);
- ``small``: head dims of 64, as GPU attention kernels expect (vLLM smoke tests);
- ``7b``: the Qwen2.5-VL-7B-Instruct shapes (~8B parameters; GPU benchmarks, see :func:`build_model`).

CLI: ``pixmill qwenvl make-tiny DIR [--preset tiny|small]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .messages import QWEN_CHAT_TEMPLATE

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
# A few whole-word merges so that "Yes"/"No" are single tokens (vqascore reads the first token).
_MERGES = (("Y", "e"), ("Ye", "s"), ("N", "o"), ("y", "e"), ("ye", "s"), ("n", "o"),
           ("Ġ", "Yes"), ("Ġ", "No"), ("Ġ", "yes"), ("Ġ", "no"))

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, mrope_section=[2, 2, 4]),
        "vision": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, window_size=56,
                       fullatt_block_indexes=[1]),
    },
    "small": {
        "text": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, mrope_section=[8, 12, 12]),
        "vision": dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, window_size=112,
                       fullatt_block_indexes=[1]),
    },
    "7b": {  # Qwen/Qwen2.5-VL-7B-Instruct
        "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, mrope_section=[16, 24, 24], vocab_size=152064),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31]),
    },
}


def build_tokenizer() -> Any:
    """A byte-level BPE ``Qwen2Tokenizer`` (every byte is a token) with Qwen's special tokens."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    for a, b in _MERGES:
        vocab.setdefault(a + b, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=list(_MERGES), unk_token=None, bos_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    tokenizer.model_max_length = 32768
    return tokenizer


def build_config(tokenizer: Any, preset: str = "tiny") -> Any:
    """A ``Qwen2_5_VLConfig`` of ``preset``'s shapes whose special token ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    shapes = PRESETS[preset]
    ids = tokenizer.convert_tokens_to_ids
    text = dict(shapes["text"])
    mrope = text.pop("mrope_section")
    vocab_size = max(text.pop("vocab_size", 0), len(tokenizer))
    vision = dict(shapes["vision"])
    return Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab_size, max_position_embeddings=32768, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
                         bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
                         **text),
        vision_config=dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                           out_hidden_size=text["hidden_size"], **vision),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )


def build_model(config: Any, seed: int = 0, device: str = "cpu", dtype: Any = None) -> Any:
    """Random weights for ``config``, initialised directly on ``device`` (an 8B model inits in seconds on a GPU)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype or torch.float32)
    model.generation_config.eos_token_id = [config.text_config.eos_token_id, config.text_config.pad_token_id]
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model.eval()


def build_image_processor(min_pixels: int = 4 * 28 * 28, max_pixels: int = 1280 * 28 * 28) -> Any:
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)


def build_tiny_qwen_vl(path: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight Qwen2.5-VL model folder at ``path`` and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(build_config(tokenizer, preset), seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    build_image_processor().save_pretrained(path)
    return path
