"""Run every CPU benchmark in one go and print each one's comparable figure (`make bench`).

The GPU benchmarks (flux_gpu.py, qwenvl_gpu.py) run here only in their --tiny CPU mode, which checks
they work; their real figures need a CUDA machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ["bench_startup.py"],
    ["bench_stores.py", "--rows", "1000000"],
    ["bench_chain.py", "--rows", "1000000", "--store", "jsonl"],
    ["bench_chain.py", "--rows", "1000000", "--store", "parquet"],
    ["bench_generate_overhead.py", "--prompts", "256"],
    ["bench_controlnet_overhead.py", "--prompts", "32"],
    ["bench_control_image.py", "--images", "32", "--rounds", "2"],
    ["bench_openai.py"],
    ["bench_judge_openai.py"],
    ["bench_gallery.py", "--rows", "5000", "--size", "512"],
    ["bench_run_reader.py", "--rows", "100000"],
    ["bench_local_batching.py", "--prompts", "32", "--rounds", "1"],
    # a quick pass; the documented figures use the defaults (100k-image hashing, 1M-row index)
    ["bench_curation.py", "--images", "1000", "--codes", "200000", "--stats-images", "200", "--nsfw-images", "32"],
    ["bench_safety.py"],
    ["flux_gpu.py", "--tiny"],
    ["qwenvl_gpu.py", "--tiny"],
]


def main() -> None:
    print(time.strftime("%Y-%m-%d %H:%M"), f"python {sys.version.split()[0]}", flush=True)
    failed = []
    for args in BENCHES:
        print(f"\n== {' '.join(args)}", flush=True)
        proc = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        print("\n".join(lines[-8:]))
        if proc.returncode != 0:
            failed.append(args[0])
            print(proc.stderr[-2000:])
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
