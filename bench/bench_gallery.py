"""Gallery speed: write time for a run of N rows (cold and with cached thumbnails), and the time to
the first screen in headless Chromium.

    python bench/bench_gallery.py [--rows 5000] [--size 512] [--screenshot docs/images/gallery.png]

The run is made by the real runner: the real edit-images operator over N input rows (50 distinct
source PNGs) with a stand-in serving that returns one textured picture per row (so PNGs are saved,
and thumbnailed, as a model's would be), 1% refused rows, judge-shaped scores and a filter. Prints one line:
``gallery rows 5000 images 5000 (512px PNG) write cold 20.1 s (cpu 33.0 s on 2 cores, load 1.2)
warm 1.6 s html 3.8 MB first screen 0.6 s``. The CPU seconds of the cold write divided by the
cores is what it takes on an idle machine; the load average says how idle this one was.
Targets (issue 6): 5,000 rows written in under 10 s; first screen under 2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
SHAPES = ("circle", "square", "triangle", "star")
COLORS = ("red", "blue", "green", "orange", "purple", "teal", "gold", "crimson")


def picture(size: int, shape: str, color: str, background: tuple[int, int, int], seed: int):
    """A textured picture of a shape: gradient, grain, a filled shape (PNG size like a real image)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.75, 1.15, size)[None, :, None]
    base = np.asarray(background, dtype=np.float32)[None, None, :] * ramp
    base = np.broadcast_to(base, (size, size, 3)) + rng.normal(0, 9, (size, size, 3))
    im = Image.fromarray(base.clip(0, 255).astype("uint8"))
    d = ImageDraw.Draw(im)
    m, s = size // 5, size - size // 5
    if shape == "circle":
        d.ellipse((m, m, s, s), fill=color)
    elif shape == "square":
        d.rectangle((m, m, s, s), fill=color)
    elif shape == "triangle":
        d.polygon([(size // 2, m), (s, s), (m, s)], fill=color)
    else:
        import math

        pts = [(size / 2 + (size * (0.36 if k % 2 == 0 else 0.15)) * math.cos(math.pi * k / 5 - math.pi / 2),
                size / 2 + (size * (0.36 if k % 2 == 0 else 0.15)) * math.sin(math.pi * k / 5 - math.pi / 2))
               for k in range(10)]
        d.polygon(pts, fill=color)
    return im


def build_run(folder: Path, rows: int, size: int) -> Path:
    """Input images + JSONL, then the pipeline through the real runner. Returns the run folder."""
    from PIL import Image
    from pixmill import EditRequest, GeneratedImage, Operator, Serving, Storage, get_operator

    src_dir = folder / "input" / "images"
    src_dir.mkdir(parents=True)
    for k in range(50):
        picture(size, SHAPES[k % 4], COLORS[k % 8], (200, 200, 210), k).save(src_dir / f"src-{k:02d}.png")
    # 64 distinct "edited" pictures, copied per row: every row still gets its own file to thumbnail.
    made = folder / "made"
    made.mkdir()
    for k in range(64):
        picture(size, SHAPES[(k + 1) % 4], COLORS[(k + 3) % 8], (90 + k, 140, 110 + k), 1000 + k).save(made / f"{k}.png")
    lines = []
    for i in range(rows):
        k = i % 50
        text = f"Turn the {COLORS[k % 8]} {SHAPES[k % 4]} into a {COLORS[(k + 3) % 8]} {SHAPES[(k + 1) % 4]}"
        lines.append(json.dumps({"instruction": text + (" REFUSE" if i % 100 == 7 else ""),
                                 "images": [f"images/src-{k:02d}.png"]}))
    (folder / "input" / "edits.jsonl").write_text("\n".join(lines) + "\n")

    pictures = [Image.open(made / f"{k}.png").convert("RGB") for k in range(64)]

    class PasteEdit(Serving):
        """Plays an edit model behind the real edit-images operator: returns a picture per request
        (so images are saved, with their thumbnails, exactly as a model's would be)."""

        name = "paste"
        capabilities = frozenset({"image-edit"})

        def edit(self, requests: list[EditRequest]) -> list[Any]:
            out: list[Any] = []
            for req in requests:
                if "REFUSE" in req.prompt:
                    out.append(RuntimeError("request refused by the serving: content policy (HTTP 400)"))
                    continue
                k = int(hashlib.sha1(req.prompt.encode()).hexdigest(), 16) % 64
                out.append([GeneratedImage(image=pictures[k], params={
                    "serving": "flux-kontext", "model": "black-forest-labs/FLUX.1-Kontext-dev", "seed": seed,
                    "steps": 28, "guidance": 2.5, "prompt": req.prompt}) for seed in req.seeds])
            return out

    class Judge(Operator):
        """Plays the judge: overall, sub-scores, rationale."""

        name = "judge"

        def process(self, batch: list[dict], ctx: Any) -> list[Any]:
            out = []
            for row in batch:
                h = int(hashlib.sha1(row["id"].encode()).hexdigest(), 16)
                overall = round(min(10.0, max(0.0, 6.5 + ((h % 1000) / 1000 - 0.5) * 8)), 1)
                out.append({**row, "scores": {
                    "overall": overall, "instruction_following": round(min(10, overall + 0.5), 1),
                    "preservation": round(max(0, overall - 0.7), 1), "quality": round((h >> 12) % 40 / 4, 1),
                    "rationale": "The edit follows the instruction; the background is kept."
                    if overall >= 6 else "The shape changed but the colour is off."}})
            return out

    run = folder / "edit-demo"
    with Storage(input=folder / "input" / "edits.jsonl", out=run) as st:
        get_operator("edit-images")(serving=PasteEdit(), batch_size=64).run(st.step())
        Judge().run(st.step())
        get_operator("filter")(where="scores.overall >= 3").run(st.step())
    return run


def first_screen(html: Path, screenshot: Path | None) -> float | None:
    """Seconds from navigation to the first page rendered with its visible thumbnails decoded."""
    if not Path(CHROMIUM).exists():
        print("first screen: skipped (no chromium: apt-get install -y chromium)", file=sys.stderr)
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto("about:blank")
        start = time.perf_counter()
        page.goto(html.resolve().as_uri(), wait_until="commit")
        page.wait_for_function(
            """() => document.body && document.body.dataset.rendered &&
                 [...document.querySelectorAll('#cards img')]
                   .filter(i => i.getBoundingClientRect().top < innerHeight)
                   .every(i => i.complete && i.naturalWidth > 0)""", polling="raf", timeout=60_000)
        seconds = time.perf_counter() - start
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        browser.close()
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--size", type=int, default=512, help="side of the input and edited PNGs, in pixels")
    ap.add_argument("--workers", type=int, default=None, help="thumbnail threads (default: 2 per core)")
    ap.add_argument("--dir", type=Path, default=None, help="where to build the run (default: a temp folder)")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the first screen as a PNG")
    args = ap.parse_args(argv)

    from pixmill.gallery import write_gallery

    folder = Path(args.dir or tempfile.mkdtemp(prefix="pixmill-bench-gallery-"))
    run = build_run(folder, args.rows, args.size)
    cpu = time.process_time()
    cold = write_gallery(run, workers=args.workers)
    cpu = time.process_time() - cpu  # all threads: what the write costs whatever else the machine runs
    warm = write_gallery(run, workers=args.workers)
    images = cold.thumbs.made + cold.thumbs.cached
    seconds = first_screen(cold.path, args.screenshot)
    shown = "n/a" if seconds is None else f"{seconds:.2f} s"
    load = os.getloadavg()[0]
    print(f"gallery  rows {cold.rows}  images {images}  ({args.size}px PNG)  write cold {cold.seconds:.1f} s "
          f"(cpu {cpu:.1f} s on {os.cpu_count()} cores, load {load:.1f})  warm {warm.seconds:.2f} s  "
          f"html {cold.path.stat().st_size / 1e6:.1f} MB  first screen {shown}")
    if args.dir is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
