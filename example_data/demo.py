"""The main demo (`make demo`): text-to-image, then editing of the generated images, then export.
needs: offline: tiny random-weight FLUX and Kontext models made on the spot (pixmill-diffusers)

It builds tiny random-weight FLUX and FLUX Kontext pipelines offline (no download, no GPU needed),
then runs one pipeline through the real `pixmill` CLI:

    generate-images (flux) -> edit-images (flux-kontext) -> export

Tiny random models make NOISE images: the demo proves that the whole machinery works (loading with
from_pretrained, seeds, batching, resume, provenance, export), not that it draws. The last lines it
prints show the one-line change that makes real pictures with FLUX.1-dev.

Run it again and it does no work: every step is cached. Delete demo-run/ to start over.
It runs from a clone (`make demo`) or from the folder `pixmill init` made (`python demo.py`):
its data is read beside this file, and demo-run/ is made in the current folder.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO = Path.cwd() / "demo-run"
PROMPTS = HERE / "diffusers" / "prompts.jsonl"


def say(text: str = "") -> None:
    print(text, flush=True)


def pixmill(*args: str) -> None:
    """Run the real CLI, as a user would type it."""
    cmd = [sys.executable, "-m", "pixmill", *args]
    say("$ pixmill " + " ".join(shlex.quote(a) for a in args))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        sys.exit(f"demo: the command above failed (exit code {result.returncode})")


def main() -> None:
    try:
        import diffusers  # noqa: F401
        import pixmill_diffusers  # noqa: F401
        from pixmill import Run
    except ImportError as exc:
        sys.exit(f"demo: {exc.name} is not installed; run `make demo` (it installs everything into .venv)")

    models = DEMO / "models"
    say("== 1. tiny random-weight models (offline) ==")
    for kind in ("flux", "flux-kontext"):
        if (models / kind / "model_index.json").is_file():
            say(f"{models / kind} exists")
        else:
            pixmill("diffusers", "make-tiny", str(models / kind), "--kind", kind)

    run = DEMO / "run"
    say("\n== 2. text-to-image, then editing of the generated images ==")
    pixmill(
        "run", "--input", str(PROMPTS), "--out", str(run), "--seed", "42",
        "generate-images", "--serving", "flux", "--model", str(models / "flux"),
        "--width", "256", "--height", "192", "--steps", "4", "--batch-size", "2", "--max-sequence-length", "64",
        "edit-images", "--serving", "flux-kontext", "--model", str(models / "flux-kontext"),
        "--max-area", str(256 * 192), "--steps", "4", "--batch-size", "2", "--max-sequence-length", "64",
    )

    dataset = DEMO / "dataset"
    say("\n== 3. export ==")
    pixmill("export", str(run), "--to", str(dataset), "--format", "jsonl")

    rows = list(Run(run).rows())
    example = rows[0] if rows else {}
    say("\n== done ==")
    say(f"generated images: {run / '01-generate-images' / 'images'}")
    say(f"edited images:    {run / '02-edit-images' / 'images'}")
    say(f"dataset:          {dataset}  ({len(rows)} rows, images copied beside the data file)")
    if example:
        meta = example["edited_images_meta"][0]
        say(f"one row:          {example['id']}: {example['images'][0]} -> {example['edited_images'][0]} "
            f"(seed {meta.get('seed')}, {meta.get('width')}x{meta.get('height')})")
    say("")
    say("NOTE: these models are tiny and have RANDOM weights, so every image is noise. That is expected:")
    say("the demo checks the machinery (loading, seeds, batching, resume, provenance, export), not the art.")
    say("")
    say("To make real pictures, change one line: the --model of each serving, e.g.")
    say("    generate-images --serving flux --model black-forest-labs/FLUX.1-dev")
    say("    edit-images --serving flux-kontext --model black-forest-labs/FLUX.1-Kontext-dev")
    say("(and drop --width/--height/--steps/--max-sequence-length to use the models' defaults).")
    say("Real FLUX.1-dev needs a GPU with ~36 GB at peak in bf16, or --cpu-offload on smaller cards;")
    say("the weights are gated: accept the licence on huggingface.co and `hf auth login` first.")
    say("See docs/servings/flux.md, docs/servings/flux-kontext.md and docs/gpus.md.")


if __name__ == "__main__":
    main()
