"""Overhead of pixmill's generate-images over a bare diffusers loop, on the tiny offline FLUX.

Both make the same 256 images (64x64, 2 steps, same seeds, same batches) in this process and save
them as PNG; pixmill also commits rows, records provenance and tracks resume state. Prints one
line: the ratio pixmill / bare (target: at most 1.3). Each side runs twice, interleaved, and the
faster run counts, so that a noisy machine hurts both alike.

    python bench/bench_generate_overhead.py [--prompts 256] [--batch-size 8]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from overhead_rounds import best_of_rounds, overhead_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bare(model: Path, prompts: list[str], seeds: list[int], batch: int, out: Path, size: int, steps: int) -> float:
    import torch
    from diffusers import FluxPipeline

    started = time.perf_counter()
    pipe = FluxPipeline.from_pretrained(str(model), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True)
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[start:start + batch]]
        with torch.inference_mode():
            images = pipe(prompt=chunk, generator=gens, height=size, width=size, num_inference_steps=steps,
                          guidance_scale=3.5).images
        for i, image in enumerate(images):
            image.save(out / f"{start + i}.png")
    return time.perf_counter() - started


def pixmill_run(model: Path, inp: Path, batch: int, out: Path, size: int, steps: int) -> float:
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
    from pixmill.progress import make_progress

    spec = PipelineSpec(steps=[StepSpec("generate-images", {
        "serving": "flux", "model": str(model), "width": size, "height": size, "steps": steps,
        "batch_size": batch, "dtype": "fp32", "devices": "cpu"})], input=inp, out=out)
    started = time.perf_counter()
    run_pipeline(spec, progress=make_progress(quiet=True))
    return time.perf_counter() - started


def tiny_flux_inputs(root: Path, n: int) -> tuple[Path, list[str], Path]:
    """A tiny FLUX pipeline folder under ``root``, ``n`` prompts and their input file."""
    from pixmill_diffusers.tiny import make_tiny

    model = make_tiny(root / "flux", "flux")
    prompts = [f"a photo of object number {i}" for i in range(n)]
    inp = root / "prompts.jsonl"
    inp.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return model, prompts, inp


def main() -> None:
    args = overhead_args(__doc__, prompts=256)
    from pixmill.rows import derive_seed

    with tempfile.TemporaryDirectory(prefix="pixmill-bench-") as tmp:
        root = Path(tmp)
        model, prompts, inp = tiny_flux_inputs(root, args.prompts)
        seeds = [derive_seed(0, str(i), 0) for i in range(args.prompts)]  # the ids pixmill gives these rows
        b, p = best_of_rounds(
            args.rounds,
            lambda r: bare(model, prompts, seeds, args.batch_size, root / f"bare{r}", args.size, args.steps),
            lambda r: pixmill_run(model, inp, args.batch_size, root / f"pix{r}", args.size, args.steps))
        print(f"generate-images overhead: {p / b:.3f}x (pixmill {p:.2f}s, bare diffusers {b:.2f}s; "
              f"{args.prompts} prompts, {args.size}x{args.size}, {args.steps} steps, batch {args.batch_size}, "
              f"target <= 1.3)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
