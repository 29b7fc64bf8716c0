"""What the overhead benchmarks (pixmill vs a bare diffusers loop) share: their command line and
the interleaved rounds whose fastest run counts, so a noisy machine hurts both sides alike."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


def tiny_flux_args(doc: str, prompts: int) -> argparse.ArgumentParser:
    """The options every tiny-model benchmark takes; logging quietened for a clean figure."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=prompts)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    return parser


def overhead_args(doc: str, prompts: int) -> argparse.Namespace:
    """:func:`tiny_flux_args` plus ``--batch-size``, parsed."""
    parser = tiny_flux_args(doc, prompts)
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_args()


def best_of_rounds(rounds: int, bare: Callable[[int], float], pixmill: Callable[[int], float]) -> tuple[float, float]:
    """Run ``bare(r)`` then ``pixmill(r)`` for each round; the fastest time of each side."""
    t_bare, t_pix = [], []
    for r in range(rounds):
        t_bare.append(bare(r))
        t_pix.append(pixmill(r))
    print("rounds (bare, pixmill):", [(round(x, 2), round(y, 2)) for x, y in zip(t_bare, t_pix, strict=True)],
          file=sys.stderr)
    return min(t_bare), min(t_pix)
