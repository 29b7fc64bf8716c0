"""Overhead of ``control-image --kind depth`` over a bare transformers depth loop, and what batching
the forward passes gains, on the tiny offline Depth Anything model (`make-tiny --kind depth`).

Both sides read the same PNG files, run the model on the same batches, resize each prediction to
its source, normalise it to an 8-bit map and save it as PNG; pixmill also resolves and checks each
row's file, commits rows, records the map's settings and tracks resume state. Prints two lines: the
ratio pixmill / bare (target: at most 1.3), and the speed-up of ``--model-batch 8`` over
``--model-batch 1`` inside pixmill. Each side runs ``--rounds`` times, interleaved; the fastest counts.

    python bench/bench_control_image.py [--images 64] [--size 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from overhead_rounds import best_of_rounds

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BATCH = 8


def bare(model_dir: Path, files: list[Path], out: Path) -> float:
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    started = time.perf_counter()
    model = AutoModelForDepthEstimation.from_pretrained(str(model_dir)).eval()
    processor = AutoImageProcessor.from_pretrained(str(model_dir), backend="pil")
    out.mkdir(parents=True)
    for start in range(0, len(files), BATCH):
        images = [Image.open(f).convert("RGB") for f in files[start:start + BATCH]]
        with torch.inference_mode():
            outputs = model(**processor(images=images, return_tensors="pt"))
        sizes = [(im.height, im.width) for im in images]
        for i, result in enumerate(processor.post_process_depth_estimation(outputs, target_sizes=sizes)):
            depth = result["predicted_depth"].numpy()
            grey = ((depth - depth.min()) / (depth.max() - depth.min()) * 255).astype("uint8")
            Image.fromarray(np.stack([grey] * 3, axis=-1)).save(out / f"{start + i}.png")
    return time.perf_counter() - started


def pixmill_run(model_dir: Path, inp: Path, out: Path, model_batch: int) -> float:
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
    from pixmill.progress import make_progress

    spec = PipelineSpec(steps=[StepSpec("control-image", {
        "kind": "depth", "model": str(model_dir), "device": "cpu", "model_batch": model_batch,
        "batch_size": BATCH})], input=inp, out=out)
    started = time.perf_counter()
    run_pipeline(spec, progress=make_progress(quiet=True))
    return time.perf_counter() - started


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image
    from pixmill_diffusers.tiny_estimators import make_tiny_estimator

    with tempfile.TemporaryDirectory(prefix="pixmill-bench-") as tmp:
        root = Path(tmp)
        model = make_tiny_estimator(root / "depth", "depth")
        rng = np.random.RandomState(0)
        files = []
        for i in range(args.images):
            files.append(root / f"photo{i}.png")
            Image.fromarray((rng.rand(args.size, args.size, 3) * 255).astype("uint8")).save(files[-1])
        inp = root / "rows.jsonl"
        inp.write_text("".join(json.dumps({"image": f.name}) + "\n" for f in files))
        b, p = best_of_rounds(args.rounds, lambda r: bare(model, files, root / f"bare{r}"),
                              lambda r: pixmill_run(model, inp, root / f"pix{r}", BATCH))
        print(f"control-image --kind depth overhead: {p / b:.3f}x (pixmill {p:.2f}s, bare transformers {b:.2f}s; "
              f"{args.images} images {args.size}x{args.size}, batch {BATCH}, target <= 1.3)")
        one, many = best_of_rounds(args.rounds, lambda r: pixmill_run(model, inp, root / f"one{r}", 1),
                                   lambda r: pixmill_run(model, inp, root / f"many{r}", BATCH))
        print(f"control-image --kind depth --model-batch {BATCH} vs 1: {one / many:.2f}x faster "
              f"({many:.2f}s vs {one:.2f}s)", flush=True)


if __name__ == "__main__":
    main()
