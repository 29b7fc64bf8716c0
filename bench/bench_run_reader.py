"""Run reader speed: what `pixmill.Run` costs over reading the step files themselves, in one run.

    python bench/bench_run_reader.py [--rows 100000]

Makes a run with the real runner (input -> template -> filter, a third of the rows filtered out and
1% failed, every row naming one of 50 PNG files) and times, best of 3:

- ``parts``: every step's committed rows read once, straight from the step folders (the floor);
- ``statuses``: ``Run.statuses()`` (output rows, failed rows, filtered rows with why) and
  ``Run.image_columns`` over them (which fields hold image files: a cached roots and image check
  per file), what the gallery and the export do before any image is touched.

Prints one line, e.g. ``run reader over 100,000 rows x 3 steps: parts 0.61 s, statuses + image
columns 1.52 s (2.49x the parts)``. Ratios are comparable across machines; absolute times are not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _best(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_run(root: Path, n: int) -> Path:
    from PIL import Image
    from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline

    for k in range(50):
        Image.new("RGB", (32, 32), (5 * k, 100, 200)).save(root / f"src-{k}.png")
    inp = root / "in.jsonl"
    with open(inp, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = {"image": f"src-{i % 50}.png", "n": i}
            if i % 100 != 7:  # 1% lack the field the template reads: they fail
                row["subject"] = f"thing {i}"
            fh.write(json.dumps(row) + "\n")
    spec = PipelineSpec(steps=[StepSpec("template", {"template": "a photo of {subject}", "output_key": "prompt"}),
                               StepSpec("filter", {"where": "n % 3 != 0"})], input=inp, out=root / "run")
    run_pipeline(spec)
    return root / "run"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args(argv)

    from pixmill import Run

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(Path(tmp), args.rows)

        def parts() -> None:
            for step in Run(run_dir).steps:
                for _row in step.rows():
                    pass

        def statuses() -> None:
            run = Run(run_dir)
            records = list(run.statuses())
            columns = run.image_columns(r.row for r in records)
            assert columns == {"image": False}, columns

        counts = {}
        for record in Run(run_dir).statuses():
            counts[record.status] = counts.get(record.status, 0) + 1
        assert sum(counts.values()) == args.rows, counts
        floor, reader = _best(parts), _best(statuses)
    print(f"run reader over {args.rows:,} rows x 3 steps ({counts.get('ok', 0):,} ok, "
          f"{counts.get('filtered', 0):,} filtered, {counts.get('failed', 0):,} failed): parts {floor:.2f} s, "
          f"statuses + image columns {reader:.2f} s ({reader / floor:.2f}x the parts)")


if __name__ == "__main__":
    sys.exit(main())
