"""What the safety rules cost, and how fast Ctrl-C stops HTTP work. Ratios are measured in one run.

    python bench/bench_safety.py                 # prints three figures

1. Rerun of a finished pipeline over a 60 MB input, which is hashed on every run (inputs up to
   64 MiB are), against the same rerun trusting size and mtime (the rule for larger inputs).
2. ``export --format jsonl`` of 2,000 image rows (96 px PNGs) with the roots rule and the image check, against
   the same export with both switched off in this process.
3. Seconds from Ctrl-C to exit while 8 requests of 25 s are in flight: one Ctrl-C (grace period
   10 s, the default) and two Ctrl-C. Before the interrupt rules the first took 47-50 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill_testing.openai_server import FakeOpenAIServer


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def input_hash(root: Path) -> str:
    import pixmill.runner as runner

    inp = root / "big.jsonl"
    with open(inp, "w") as fh:
        for i in range(300_000):
            fh.write(json.dumps({"id": i, "prompt": f"a photo of thing number {i} " + "x" * 150}) + "\n")
    spec = PipelineSpec(steps=[StepSpec("head", {"n": 10})], input=inp, out=root / "run")
    run_pipeline(spec)
    hashed = min(_timed(lambda: run_pipeline(spec)) for _ in range(3))
    saved, runner.ALWAYS_HASH_BYTES = runner.ALWAYS_HASH_BYTES, 0
    try:
        trusted = min(_timed(lambda: run_pipeline(spec)) for _ in range(3))
    finally:
        runner.ALWAYS_HASH_BYTES = saved
    size = inp.stat().st_size / 1e6
    return (f"rerun over a {size:.0f} MB input: hashed {hashed:.3f}s, size+mtime trusted {trusted:.3f}s "
            f"(+{hashed - trusted:.3f}s)")


def export_checks(root: Path) -> str:
    import pixmill.file_roots as file_roots
    from PIL import Image
    from pixmill.exporting import export_dataset

    data = root / "imgs"
    data.mkdir()
    Image.frombytes("RGB", (96, 96), os.urandom(96 * 96 * 3)).save(data / "0.png")
    for i in range(1, 2000):
        shutil.copyfile(data / "0.png", data / f"{i}.png")
    inp = data / "in.jsonl"
    inp.write_text("".join(json.dumps({"image": f"{i}.png"}) + "\n" for i in range(2000)))
    run_pipeline(PipelineSpec(steps=[StepSpec("head", {"n": 2000})], input=inp, out=root / "erun"))

    def export() -> None:
        export_dataset(root / "erun", root / "ds", "jsonl")

    saved = file_roots.check_image_file, file_roots.FileRoots.check

    def unchecked_export() -> None:
        file_roots.check_image_file = lambda path, named=None: None
        file_roots.FileRoots.check = lambda self, path, named=None: Path(os.path.realpath(path))
        try:
            export()
        finally:
            file_roots.check_image_file, file_roots.FileRoots.check = saved

    export()  # warm the page cache
    checked, unchecked = [], []
    for _ in range(3):  # interleaved, so that load from other jobs hits both alike
        checked.append(_timed(export))
        unchecked.append(_timed(unchecked_export))
    checked, unchecked = min(checked), min(unchecked)
    roots = file_roots.run_roots(root / "erun", data)
    files = sorted(data.glob("*.png"))
    per_image = _timed(lambda: [file_roots.check_image_file(roots.check(f)) for f in files]) / len(files)
    return (f"export of 2,000 images: with roots rule and image check {checked:.3f}s, without {unchecked:.3f}s "
            f"({checked / unchecked:.2f}x); the checks alone {per_image * 1e6:.0f} us per image")


def ctrl_c(root: Path) -> str:
    inp = root / "slow.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"slow {i}"}) + "\n" for i in range(32)))
    exe = str(Path(sys.executable).with_name("pixmill"))
    figures = []
    for presses in (1, 2):
        with FakeOpenAIServer(latency=25) as server:
            cmd = [exe, "run", "-q", "-i", str(inp), "-o", str(root / f"c{presses}"), "generate-images",
                   "--serving", "openai-images", "--base-url", server.url, "--api-key", "k", "--concurrency", "8"]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            while len(server.requests) < 8:
                time.sleep(0.01)
            t0 = time.perf_counter()
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.3 if presses > 1 else 0)
            proc.wait(60)
            took = time.perf_counter() - t0
            late = sum(r.started > time.time() - took for r in server.requests)
            figures.append(f"{presses} Ctrl-C: exit {proc.returncode} after {took:.1f}s, {late} requests started after it")
    return "; ".join(figures)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fn in (input_hash, export_checks, ctrl_c):
            folder = root / fn.__name__
            folder.mkdir()
            print(fn(folder), flush=True)


if __name__ == "__main__":
    main()
