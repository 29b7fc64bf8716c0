"""Overhead of pixmill's generate-images with a ControlNet over a bare diffusers ControlNet loop,
on the tiny offline SD 1.5 pipeline and ControlNet (`make-tiny --kind sd` / `--kind controlnet`).

Both make the same images (64x64, 2 steps, same seeds, same batches, one control image per row
read from a PNG file) in this process and save them as PNG; pixmill also reads the control image
named in each row, commits rows, records provenance and tracks resume state. Prints one line: the
ratio pixmill / bare (target: at most 1.3). Each side runs twice, interleaved; the faster run counts.

    python bench/bench_controlnet_overhead.py [--prompts 64] [--batch-size 8]
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


def bare(model: Path, net: Path, rows: list[dict], root: Path, seeds: list[int], batch: int, out: Path,
         size: int, steps: int) -> float:
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    started = time.perf_counter()
    controlnet = ControlNetModel.from_pretrained(str(net), torch_dtype=torch.float32)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(str(model), controlnet=controlnet,
                                                             torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True)
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        controls = [Image.open(root / r["control_image"]).convert("RGB") for r in chunk]
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[start:start + batch]]
        with torch.inference_mode():
            images = pipe(prompt=[r["prompt"] for r in chunk], image=controls, generator=gens, height=size,
                          width=size, num_inference_steps=steps).images
        for i, image in enumerate(images):
            image.save(out / f"{start + i}.png")
    return time.perf_counter() - started


def pixmill_run(model: Path, net: Path, inp: Path, batch: int, out: Path, size: int, steps: int) -> float:
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
    from pixmill.progress import make_progress

    spec = PipelineSpec(steps=[StepSpec("generate-images", {
        "serving": "diffusers", "model": str(model), "controlnet": str(net), "width": size, "height": size,
        "steps": steps, "batch_size": batch, "dtype": "fp32", "devices": "cpu"})], input=inp, out=out)
    started = time.perf_counter()
    run_pipeline(spec, progress=make_progress(quiet=True))
    return time.perf_counter() - started


def main() -> None:
    args = overhead_args(__doc__, prompts=64)
    import numpy as np
    from PIL import Image
    from pixmill.rows import derive_seed
    from pixmill_diffusers.tiny import make_tiny
    from pixmill_diffusers.tiny_addons import make_tiny_controlnet

    with tempfile.TemporaryDirectory(prefix="pixmill-bench-") as tmp:
        root = Path(tmp)
        model = make_tiny(root / "sd", "sd")
        net = make_tiny_controlnet(model, root / "controlnet")
        rng = np.random.RandomState(0)
        for k in range(4):
            edges = (rng.rand(args.size, args.size) > 0.9).astype("uint8") * 255
            Image.fromarray(np.stack([edges] * 3, axis=-1)).save(root / f"edges{k}.png")
        rows = [{"prompt": f"a photo of object number {i}", "control_image": f"edges{i % 4}.png"}
                for i in range(args.prompts)]
        inp = root / "prompts.jsonl"
        inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        seeds = [derive_seed(0, str(i), 0) for i in range(args.prompts)]  # the ids pixmill gives these rows
        b, p = best_of_rounds(
            args.rounds,
            lambda r: bare(model, net, rows, root, seeds, args.batch_size, root / f"bare{r}", args.size, args.steps),
            lambda r: pixmill_run(model, net, inp, args.batch_size, root / f"pix{r}", args.size, args.steps))
        print(f"generate-images --controlnet overhead: {p / b:.3f}x (pixmill {p:.2f}s, bare diffusers {b:.2f}s; "
              f"{args.prompts} prompts, {args.size}x{args.size}, {args.steps} steps, batch {args.batch_size}, "
              f"target <= 1.3)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
