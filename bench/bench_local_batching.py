"""Tiny FLUX through generate-images: one image per pipeline call against the images per call
that the flux serving picks by itself (docs/gpus.md, "Images per call"), in one run.

Both sides make the same images (same seeds, 64x64, 2 steps) through the real runner; each runs
``--rounds`` times, interleaved, and the faster round counts. Prints the chosen images per call and
the ratio one-per-call / chosen (above 1: the default batching is faster).

    python bench/bench_local_batching.py [--prompts 128] [--size 64]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generate_overhead import pixmill_run, tiny_flux_inputs  # noqa: E402
from overhead_rounds import tiny_flux_args  # noqa: E402


def main() -> None:
    args = tiny_flux_args(__doc__.splitlines()[0], 128).parse_args()
    from pixmill_diffusers.flux import FluxServing

    with tempfile.TemporaryDirectory(prefix="pixmill-bench-") as tmp:
        root = Path(tmp)
        model, _, inp = tiny_flux_inputs(root, args.prompts)
        chosen = FluxServing(model=str(model), width=args.size, height=args.size, devices="cpu").images_per_call()
        one, auto = [], []
        for r in range(args.rounds):
            one.append(pixmill_run(model, inp, 1, root / f"one{r}", args.size, args.steps))
            auto.append(pixmill_run(model, inp, None, root / f"auto{r}", args.size, args.steps))
        a, b = min(one), min(auto)
        print(f"local batching: one image per call {a:.2f}s, default ({chosen} per call) {b:.2f}s: "
              f"{a / b:.2f}x faster ({args.prompts} prompts, {args.size}x{args.size}, {args.steps} steps, CPU)")


if __name__ == "__main__":
    main()
