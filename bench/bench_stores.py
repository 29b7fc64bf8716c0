"""Store throughput: rows/s for write_part and read_part, JSONL vs Parquet, measured in one run.

    python bench/bench_stores.py [--rows 1000000] [--part-rows N] [--stores jsonl,parquet]

Prints one comparable line per store, e.g.
``jsonl    write  420000 rows/s  read  380000 rows/s  step  200000 rows/s  size 82.0 MB``.
``step`` is what a pipeline step that reads its input part and writes its output part could reach
at best (1 / (1/write + 1/read)); the template->filter->head target is 300k rows/s per step.
Absolute figures depend on the machine: compare the stores' ratios.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path


def make_rows(n: int) -> list[dict]:
    return [
        {"id": str(i), "prompt": f"a photo of a cat number {i}", "images": [f"x/{i}-0.png"], "scores": {"overall": 7}}
        for i in range(n)
    ]


def bench(store, rows: list[dict], folder: Path, part_rows: int) -> tuple[float, float, int]:
    paths = [folder / f"part-{i:06d}{store.suffix}" for i in range(0, len(rows), part_rows)]
    start = time.perf_counter()
    for path, lo in zip(paths, range(0, len(rows), part_rows), strict=True):
        store.write_part(path, rows[lo : lo + part_rows])
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    count = 0
    for path in paths:
        for _row in store.read_part(path):
            count += 1
    read_s = time.perf_counter() - start
    assert count == len(rows), (count, len(rows))
    size = sum(p.stat().st_size for p in paths)
    for p in paths:
        p.unlink()
    return len(rows) / write_s, len(rows) / read_s, size


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--part-rows", type=int, default=0, help="rows per part file (default: all in one part)")
    ap.add_argument("--stores", default="jsonl,parquet")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder)")
    args = ap.parse_args(argv)

    from pixmill.plugins import load_registry

    registry = load_registry()
    rows = make_rows(args.rows)
    # The bench holds 1M input rows; freezing them keeps the garbage collector from re-scanning them
    # on every collection, which would measure the bench's own heap rather than the store.
    gc.collect()
    gc.freeze()
    part_rows = args.part_rows or args.rows
    print(f"# {args.rows} rows, {part_rows} rows per part, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for name in args.stores.split(","):
            store = registry.get_store(name)()
            bench(store, rows[:1000], Path(tmp), 1000)  # warm up: lazy imports, first-call setup
            write, read, size = bench(store, rows, Path(tmp), part_rows)
            step = 1 / (1 / write + 1 / read)
            print(f"{name:8s} write {write:8.0f} rows/s  read {read:8.0f} rows/s  "
                  f"step {step:8.0f} rows/s  size {size / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
