"""Overhead of the ray executor over the local executor's device pool, on the tiny offline FLUX.

Both make the same 256 images (64x64, 2 steps, batch 8) with two CPU replicas: the local executor
with `--devices cpu,cpu` (two worker processes, one thread each) and `--executor ray` with a local
Ray of 2 CPUs and 2 replicas of 1 CPU each (Ray gives each one thread). Prints the step times and
one line: the ratio ray / device pool (target: at most 1.2). Starting Ray itself (a few seconds,
once per run, not per step) is printed apart and left out of the ratio.

    python bench/ray_overhead.py [--prompts 256] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(model: Path, inp: Path, out: Path, batch: int, executor: str, executor_options: dict, devices: str) -> float:
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
    from pixmill.progress import make_progress

    step = StepSpec("generate-images", {"serving": "flux", "model": str(model), "width": 64, "height": 64,
                                        "steps": 2, "batch_size": batch, "devices": devices})
    spec = PipelineSpec(steps=[step], input=inp, out=out, executor=executor, executor_options=executor_options)
    results = run_pipeline(spec, progress=make_progress(quiet=True))
    last = results[-1]
    if last.done != int(inp.read_text().count("\n")) or last.failed:
        sys.exit(f"{executor}: {last.done} done, {last.failed} failed")
    return last.seconds


def _image_names(run_dir: Path) -> list[str]:
    """The file names of the images step 1 of a run made, read through the run reader."""
    from pixmill import Run

    run = Run(run_dir)
    return sorted(p.name for row in run.rows(1) for p in run.images(row) if p is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    from pixmill_diffusers.tiny import make_tiny

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_tiny(root / "flux", "flux")
        inp = root / "prompts.jsonl"
        inp.write_text("".join(json.dumps({"prompt": f"a tiny picture number {i}"}) + "\n"
                               for i in range(args.prompts)))
        pool = run(model, inp, root / "pool", args.batch_size, "local", {}, "cpu,cpu")
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=2, object_store_memory=256 * 1024 * 1024, include_dashboard=False,
                 logging_level="WARNING")
        ray_start = time.perf_counter() - started
        try:
            on_ray = run(model, inp, root / "ray", args.batch_size, "ray",
                         {"replicas": 2, "cpus_per_replica": 1}, "cpu")
        finally:
            ray.shutdown()
        same = _image_names(root / "pool") == _image_names(root / "ray")
    print(f"device pool, 2 CPU workers: {pool:.2f} s for {args.prompts} images")
    print(f"ray, 2 CPU replicas:        {on_ray:.2f} s (starting Ray: {ray_start:.1f} s, once per run)")
    print(f"same image files: {same}")
    print(f"ray / device pool: {on_ray / pool:.3f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
