"""judge through qwen-vl's openai engine against a local OpenAI-compatible server: wall time vs ideal.

    python bench/bench_judge_openai.py --images 512 --concurrency 32 --latency 0.1

The fake server (pixmill_testing.openai_server, started in its own process like a real endpoint)
answers every chat request after ``--latency`` seconds with a JSON judgment, as ``vllm serve`` would.
The ideal wall time is ceil(images / concurrency) * latency; the target is at most 1.5x that. The
figure is the whole judge step as ``pixmill run`` runs it (median of ``--repeat`` runs): reading
rows, loading, resizing and encoding the images, the HTTP round trips, parsing the answers and
committing the rows. One-time process costs (imports) are paid before timing.

``--side`` sets the input image size (default 64 px, so the figure measures the request machinery);
larger images add CPU work per image (decode, resize, PNG encode) that a 2-core machine pays
serially: run ``--side 512`` to see it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill_testing.openai_server import FakeOpenAIServer

ANSWER = '{"rationale": "on prompt", "prompt_alignment": 8, "visual_quality": 7, "overall": 7.5}'


def make_inputs(folder: Path, count: int, side: int) -> Path:
    """``count`` distinct PNGs (noise, so encoding costs what a real image costs: the worst case,
    as noise hardly compresses) and their rows; made on every core."""
    from concurrent.futures import ProcessPoolExecutor

    images = folder / "images"
    images.mkdir(parents=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_make_image, [(images / f"{i}.png", side, i) for i in range(count)], chunksize=8))
    lines = [json.dumps({"id": str(i), "prompt": f"a test image number {i}", "image": f"images/{i}.png"})
             for i in range(count)]
    path = folder / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _make_image(job: tuple[Path, int, int]) -> None:
    from PIL import Image

    path, side, i = job
    rng = random.Random(i)
    image = Image.effect_noise((side, side), 40 + i % 50).convert("RGB")
    image.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (0, 0, side // 2, side // 2))
    image.save(path)


def serve(port: int, latency: float) -> None:
    """Server mode (run in a child process): answer every chat request with a judgment."""
    server = FakeOpenAIServer(latency=latency, chat_handler=lambda rec: ANSWER, port=port).start()
    print(f"listening on {server.base_url}", flush=True)
    server.serve_until_interrupted()


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def run_side(url: str, work: Path, side: int, args: argparse.Namespace) -> float:
    """The median judge-step wall time over ``--repeat`` runs on ``--images`` images of ``side`` px."""
    rows = make_inputs(work / f"in{side}", args.images, side)
    serving = {"serving": "qwen-vl", "engine": "openai", "base_url": url, "model": "Qwen/Qwen2.5-VL-7B-Instruct",
               "concurrency": args.concurrency}
    if args.max_pixels:
        serving["max_pixels"] = args.max_pixels
    walls = []
    for attempt in range(args.repeat):
        step = StepSpec("judge", dict(serving))
        judge = run_pipeline(PipelineSpec(steps=[step], input=rows, out=work / f"run{side}-{attempt}"))[-1]
        assert judge.done == args.images and judge.failed == 0, judge
        walls.append(judge.seconds)
    return sorted(walls)[len(walls) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the server takes per answer")
    parser.add_argument("--sides", default="64,1024", help="input image sides in pixels, one run each")
    parser.add_argument("--max-pixels", type=int, default=1024 * 1024,
                        help="qwen-vl --max-pixels (0: the serving's default, 1280*28*28)")
    parser.add_argument("--repeat", type=int, default=3, help="runs to take the median of")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve, args.latency)

    import openai.resources.chat  # noqa: F401 - one-time import, not per-request work
    from pixmill.plugins import get_registry

    get_registry().names("servings")
    sides = [int(s) for s in args.sides.split(",")]
    work = Path(tempfile.mkdtemp(prefix="pixmill-bench-judge-"))
    proc, url = start_server(args.latency)
    try:
        walls = {side: run_side(url, work, side, args) for side in sides}
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    ideal = math.ceil(args.images / args.concurrency) * args.latency
    ok = True
    for side, wall in walls.items():
        ratio = wall / ideal
        ok = ok and ratio <= 2.0
        print(f"judge (qwen-vl, openai engine): {args.images} images of {side}px, concurrency {args.concurrency}, "
              f"latency {args.latency * 1000:.0f} ms: wall {wall:.2f}s (median of {args.repeat}), "
              f"ideal {ideal:.2f}s, ratio {ratio:.2f}x")
    if len(sides) > 1:
        small, large = walls[min(sides)], walls[max(sides)]
        print(f"{max(sides)}px / {min(sides)}px: {large / small:.2f}x (target <= 2x) "
              f"{'OK' if large / small <= 2.0 and ok else 'OVER'}")


if __name__ == "__main__":
    main()
