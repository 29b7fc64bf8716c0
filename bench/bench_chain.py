"""template -> filter -> head over N generated rows: rows/s per step, peak memory, rerun cost.

    python bench/bench_chain.py --rows 1000000 --store jsonl

Each step runs in this process (like `pixmill run`); peak memory is this process's max RSS.
Prints one line per step and a summary line that other runs can be compared with. Besides wall
time it reports rows per CPU-second of this process: what one core does, unaffected by other
processes sharing the machine (the figure the targets are stated in).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill.progress import Progress


class CpuClock(Progress):
    """Records the CPU time this process spends in each step."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def step_started(self, name, total, cached):
        self._t0 = time.process_time()

    def step_finished(self, result):
        self.cpu[result.folder] = time.process_time() - self._t0


def make_input(path: Path, rows: int) -> None:
    with open(path, "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"subject": f"cat number {i}", "style": "oil painting", "width": 512 + (i % 4) * 256}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--store", default="jsonl")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pixmill-bench-"))
    inp = work / "input.jsonl"
    make_input(inp, args.rows)
    spec = PipelineSpec(
        steps=[StepSpec("template", {"template": "a photo of {subject}, {style}", "output_key": "prompt"}),
               StepSpec("filter", {"where": "width >= 768 and len(prompt) < 200"}),
               StepSpec("head", {"n": args.rows // 2})],
        input=inp, out=work / "run", store=args.store)
    clock = CpuClock()
    t0 = time.perf_counter()
    results = run_pipeline(spec, progress=clock)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_pipeline(spec, progress=Progress())
    rerun = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_cpu = []
    for r in results:
        processed = r.new_done + r.new_failed if r.index else r.rows
        cpu = clock.cpu[r.folder]
        if r.index:
            per_cpu.append(processed / max(cpu, 1e-9))
        print(f"{args.store:8} {r.folder:14} {processed:>9,} rows  wall {r.seconds:6.2f}s = "
              f"{processed / max(r.seconds, 1e-9):>9,.0f} rows/s  cpu {cpu:6.2f}s = {processed / max(cpu, 1e-9):>9,.0f} rows/cpu-s")
    slowest = min(per_cpu)
    print(f"{args.store}: rows={args.rows} slowest_step_rows_per_cpu_s={slowest:,.0f} first_run_s={first:.2f} "
          f"rerun_s={rerun:.3f} rerun_ratio={rerun / first:.4f} peak_rss_mb={peak_mb:.0f}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
