"""pixmill-safety: curation operators and the models behind them.

- ``dedupe-images``: exact and perceptual-hash near-duplicates through a multi-index hash table;
- ``detect-nsfw``: the nudenet ONNX detector (its model ships in the wheel), on CPU by default;
- ``check-prompts``: block lists, and optionally a ``moderation`` serving (``openai-moderation``);
- ``clip-score`` and ``aesthetic-score`` over the ``clip`` serving (transformers CLIP / SigLIP).

Importing this module imports nothing heavy: numpy, onnxruntime, torch and transformers are
imported inside the methods that need them, so ``pixmill --help`` stays fast.
"""

from __future__ import annotations

from typing import Callable

from pixmill.hookspecs import hookimpl

__all__ = ["register_operators", "register_servings"]


@hookimpl
def register_operators(register: Callable[[type], None]) -> None:
    """Register the curation operators."""
    from .check_prompts import CheckPrompts
    from .clip_ops import AestheticScore, ClipScore
    from .dedupe import DedupeImages
    from .nsfw import DetectNsfw

    for cls in (DedupeImages, DetectNsfw, CheckPrompts, ClipScore, AestheticScore):
        register(cls)


@hookimpl
def register_servings(register: Callable[[type], None]) -> None:
    """Register the ``clip`` and ``openai-moderation`` servings."""
    from .clip import ClipServing
    from .moderation import OpenAIModerationServing

    register(ClipServing)
    register(OpenAIModerationServing)
