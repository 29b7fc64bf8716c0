"""judge through qwen-vl's openai engine against a local OpenAI-compatible server: wall time vs ideal.

    python bench/bench_judge_openai.py                 # 256 images at 64 px, then at 1024 px
    python bench/bench_judge_openai.py --full-parse    # the server parses whole bodies (see below)

The fake server (pixmill_testing.openai_server, started in its own process like a real endpoint)
answers every chat request after ``--latency`` seconds with a JSON judgment, as ``vllm serve`` would.
The ideal wall time is ceil(images / concurrency) * latency. The figure is the whole judge step as
``pixmill run`` runs it (median of ``--repeat`` runs): reading rows, loading, reading and
base64-encoding the images (resizing them when they are outside the pixel bounds), the HTTP round
trips, parsing the answers and committing the rows. One-time process costs (imports) are paid
before timing; the step's own start-up (the median of three one-row runs, less their request) is
printed, and the ratio to the ideal after it. Targets: the 1024 px run within 2x the 64 px run, and
each within 2x the ideal after start-up.

``--sides`` sets the input image sizes (noise PNGs: the worst case for size, ~2.7 MB of base64 at
1024 px). ``--max-pixels`` is the serving's: 1024*1024 (the default here) takes 1024 px images as
they are; 0 (the serving's own default, 1280*28*28) resizes and re-encodes every one of them.

The server skims: a real server parses and decodes images on its own machine, but this one shares
the client's cores, so by default (``skim_images``) it cuts each base64 data URL out of the raw body
before parsing the JSON and records only its fingerprint (length and CRC-32 of three 4 KiB samples).
It still checks, for every 8th row, that the one image part it got has the fingerprint of the upload
the serving's own code makes for that row's file; a wrong image fails the row and the benchmark.
``--full-parse`` makes it parse whole bodies as the test suite's server does. Each run prints the
client's and the server's CPU milliseconds per image, so the figure says where the time goes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill_testing.openai_server import FakeOpenAIServer, RecordedRequest, image_fingerprint

ROW = re.compile(r"a test image of (\d+)px, number (\d+)")
ANSWER = '{"rationale": "on prompt", "prompt_alignment": 8, "visual_quality": 7, "overall": 7.5}'


def make_inputs(folder: Path, count: int, side: int) -> Path:
    """``count`` distinct PNGs (noise, so encoding costs what a real image costs: the worst case,
    as noise hardly compresses) and their rows; made on every core."""
    from concurrent.futures import ProcessPoolExecutor

    images = folder / "images"
    images.mkdir(parents=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_make_image, [(images / f"{i}.png", side, i) for i in range(count)], chunksize=8))
    lines = [json.dumps({"id": str(i), "prompt": f"a test image of {side}px, number {i}", "image": f"images/{i}.png"})
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


def serve(port: int, latency: float, expected: Path, full_parse: bool) -> None:
    """Server mode (run in a child process): answer every chat request with a judgment, once its one
    image matched the fingerprint the client expects for that row (:func:`expect_uploads`, a
    sample of rows); a wrong image gets an answer that fails its row."""
    fingerprints: dict[str, str] = {}

    def judge(rec: RecordedRequest) -> str:
        match = ROW.search(rec.prompt)
        if match is None or rec.image_parts != 1:
            return f"expected one image and a row's prompt, got {rec.image_parts} images"
        key = f"{match.group(1)}/{match.group(2)}"
        if key not in fingerprints and expected.exists():
            fingerprints.update(json.loads(expected.read_text()))
        want = fingerprints.get(key)
        if want is None:  # not a sampled row
            return ANSWER
        (sent,) = rec.image_fingerprints or [image_fingerprint(base64_text(rec.sent_images[0]))]
        return ANSWER if sent == want else f"wrong image for row {key}: {sent}, expected {want}"

    server = FakeOpenAIServer(latency=latency, chat_handler=judge, port=port, skim_images=not full_parse).start()
    print(f"listening on {server.base_url}", flush=True)
    server.serve_until_interrupted()


def base64_text(url: str | bytes) -> bytes:
    """The base64 part of a data URL (what :func:`image_fingerprint` is taken of)."""
    text = url.encode() if isinstance(url, str) else url
    return text.partition(b";base64,")[2]


def expect_uploads(rows: Path, side: int, serving: dict, expected: Path) -> int:
    """Record, for every 8th row, the fingerprint of the upload the serving should send (made by the
    serving's own upload code, before any timing), for the server to check against what came."""
    from pixmill.http.uploads import prepare_upload
    from pixmill.image_files import probe_image
    from pixmill.plugins import get_registry

    rule = get_registry().get("servings", "qwen-vl")(**{k: v for k, v in serving.items() if k != "serving"}).upload_rule()
    known = json.loads(expected.read_text()) if expected.exists() else {}
    for line in rows.read_text().splitlines()[::8]:
        row = json.loads(line)
        upload = prepare_upload(probe_image(rows.parent / row["image"]), rule)
        known[f"{side}/{row['id']}"] = image_fingerprint(base64_text(upload.data_url()))
    expected.write_text(json.dumps(known))
    return len(known)


def start_server(latency: float, expected: Path, full_parse: bool) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency", str(latency),
                             "--expected", str(expected)] + (["--full-parse"] if full_parse else []),
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system, every thread) this process, or process ``pid``, has used so far."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_side(url: str, work: Path, side: int, args: argparse.Namespace, server_pid: int
             ) -> tuple[float, float, float, float]:
    """The median judge-step wall time over ``--repeat`` runs on ``--images`` images of ``side`` px,
    the client's and the server's CPU seconds per image (means over the runs), and the step's
    start-up: the median wall time of three one-row runs, less their one request's latency."""
    rows = make_inputs(work / f"in{side}", args.images, side)
    serving = {"serving": "qwen-vl", "engine": "openai", "base_url": url, "model": "Qwen/Qwen2.5-VL-7B-Instruct",
               "concurrency": args.concurrency}
    if args.max_pixels:
        serving["max_pixels"] = args.max_pixels
    expect_uploads(rows, side, serving, work / "expected.json")
    walls, client_cpu, server_cpu = [], 0.0, 0.0
    for attempt in range(args.repeat):
        step = StepSpec("judge", dict(serving))
        client0, server0 = cpu_seconds(), cpu_seconds(server_pid)
        judge = run_pipeline(PipelineSpec(steps=[step], input=rows, out=work / f"run{side}-{attempt}"))[-1]
        client_cpu += cpu_seconds() - client0
        server_cpu += cpu_seconds(server_pid) - server0
        assert judge.done == args.images and judge.failed == 0, judge
        walls.append(judge.seconds)
    runs = args.repeat * args.images
    one_row = rows.with_name("one-row.jsonl")
    one_row.write_text(rows.read_text().splitlines()[0] + "\n")
    startups = []
    for attempt in range(3):
        step = StepSpec("judge", dict(serving))
        judge = run_pipeline(PipelineSpec(steps=[step], input=one_row, out=work / f"one{side}-{attempt}"))[-1]
        assert judge.done == 1, judge
        startups.append(max(0.0, judge.seconds - args.latency))
    return sorted(walls)[len(walls) // 2], client_cpu / runs, server_cpu / runs, sorted(startups)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the server takes per answer")
    parser.add_argument("--sides", default="64,1024", help="input image sides in pixels, one run each")
    parser.add_argument("--max-pixels", type=int, default=1024 * 1024,
                        help="qwen-vl --max-pixels (0: the serving's default, 1280*28*28)")
    parser.add_argument("--repeat", type=int, default=3, help="runs to take the median of")
    parser.add_argument("--full-parse", action="store_true",
                        help="the server parses whole bodies (JSON with the base64 text) instead of skimming images")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve, args.latency, args.expected, args.full_parse)

    import openai.resources.chat  # noqa: F401 - one-time import, not per-request work
    from pixmill.plugins import get_registry

    get_registry().names("servings")
    sides = [int(s) for s in args.sides.split(",")]
    work = Path(tempfile.mkdtemp(prefix="pixmill-bench-judge-"))
    proc, url = start_server(args.latency, work / "expected.json", args.full_parse)
    try:
        results = {side: run_side(url, work, side, args, proc.pid) for side in sides}
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    ideal = math.ceil(args.images / args.concurrency) * args.latency
    ok = True
    walls = {}
    for side, (wall, client_cpu, server_cpu, startup) in results.items():
        walls[side] = wall
        ratio, after_startup = wall / ideal, (wall - startup) / ideal
        ok = ok and after_startup <= 2.0
        print(f"judge (qwen-vl, openai engine): {args.images} images of {side}px, concurrency {args.concurrency}, "
              f"latency {args.latency * 1000:.0f} ms: wall {wall:.2f}s (median of {args.repeat}), "
              f"ideal {ideal:.2f}s, ratio {ratio:.2f}x; start-up {startup:.2f}s (a one-row run less its request), "
              f"{after_startup:.2f}x ideal after start-up (target <= 2x); CPU per image: client "
              f"{client_cpu * 1000:.1f} ms, server {server_cpu * 1000:.1f} ms")
    if len(sides) > 1:
        small, large = walls[min(sides)], walls[max(sides)]
        print(f"{max(sides)}px / {min(sides)}px: {large / small:.2f}x (target <= 2x) "
              f"{'OK' if large / small <= 2.0 and ok else 'OVER'}")


if __name__ == "__main__":
    main()
