"""A random-weight CLIP and aesthetic head built offline, for tests, demos and benchmarks.

``make_tiny_clip(DIR)`` writes a CLIP model folder (config, weights, a character-level BPE
tokenizer, the image processor) that loads through the real ``AutoModel.from_pretrained(DIR)``
path. Its scores are random but deterministic: they test plumbing, never quality.
``make_tiny_head(PATH, dim)`` writes an aesthetic-predictor-shaped state dict for that model.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

MAX_LENGTH = 77
_CHARS = string.ascii_lowercase + string.digits + ".,'-!?"


def make_tiny_clip(folder: str | Path, seed: int = 0, image_size: int = 32, dim: int = 32) -> Path:
    """Write a tiny random CLIP (hidden size 32, 2 layers, ``image_size`` px) to ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # transformers 5 ignores vocab_file/merges_file in the constructor: load from the folder.
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(folder)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=len(vocab), max_position_embeddings=MAX_LENGTH, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=image_size, patch_size=8),
        projection_dim=dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    with torch.no_grad():
        # Random towers give cosines around 0, which CLIPScore clips to 0 for half the pairs. Real
        # CLIP puts every image and caption in one cone (cosines ~0.1-0.4): share the projection
        # and a common offset before it, so scores are positive and still vary with image and text.
        model.text_projection.weight.copy_(model.visual_projection.weight)
        offset = torch.randn(32) * 2.0
        model.vision_model.post_layernorm.bias.copy_(offset)
        model.text_model.final_layer_norm.bias.copy_(offset)
    model.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def make_tiny_head(path: str | Path, dim: int = 32, seed: int = 0) -> Path:
    """An aesthetic-predictor-shaped head (linear layers dim->16->8->1, keys ``layers.N``)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    shapes = [(16, dim), (8, 16), (1, 8)]
    state = {}
    for n, (out_f, in_f) in zip((0, 2, 4), shapes, strict=True):
        state[f"layers.{n}.weight"] = torch.randn(out_f, in_f, generator=gen) / in_f ** 0.5
        state[f"layers.{n}.bias"] = torch.randn(out_f, generator=gen) * 0.1 + (5.0 if out_f == 1 else 0.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
