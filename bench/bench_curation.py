"""Curation speed: dedupe-images hashing and index, image-stats, detect-nsfw; one run, one machine.

    python bench/bench_curation.py [--images 100000] [--codes 1000000] [--stats-images 1000]
                                   [--nsfw-images 64] [--cache DIR]

- dedupe hashing: images/s reading and hashing (sha256 + pHash) 256 px files through the
  operator's own hashing (its process pool), PNG and JPEG; the images are made once and kept in
  ``--cache`` (in the PNG set every third file is a JPEG q70 near copy of the one before);
- dedupe index: seconds and peak RSS for ``--codes`` rows whose hashes are cached in the row, through
  ``DedupeImages.process`` in its default batches (the stage that decides duplicates), against the
  all-pairs comparison measured on a slice and scaled by n^2;
- image-stats: images/s on 512 px PNGs (all PNG), with pixels and header-only;

Every figure is given as wall images/s and per CPU-second (this process and its pool workers), with
the load average before and after it: on a shared machine the wall figure moves with the load, the
CPU figure much less.
- detect-nsfw: images/s on CPU at 512 px, batch 1 vs 16.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pixmill.context import StepContext
from pixmill.plugins import get_registry


def ctx_for(folder: Path) -> StepContext:
    return StepContext(run_dir=folder, step_dir=folder, input_dir=folder)


def cpu_seconds() -> float:
    """CPU time of this process and its live child processes (the pool workers), in seconds."""
    total = time.process_time()
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_images(folder: Path, n: int, side: int, suffix: str, copies: bool = True) -> list[str]:
    """``n`` images (with ``copies``, every third a JPEG q70 re-encode of the one before), made once
    and reused."""
    from pixmill_safety.samples import scene

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"{side}-{i:06d}{suffix}" if copies else f"{side}-only-{i:06d}{suffix}"
        path = folder / name
        if not path.exists():
            copy = copies and i % 3 == 2
            img = scene(i - 1 if copy else i, side=side)
            tmp = path.with_name("." + name)
            img.save(tmp, format="JPEG" if suffix == ".jpg" or copy else "PNG", quality=70)
            os.replace(tmp, path)
        names.append(name)
    return names


def bench_hashing(folder: Path, n: int) -> None:
    op = get_registry().get_operator("dedupe-images")()
    ctx = ctx_for(folder)
    for suffix in (".png", ".jpg"):
        names = make_images(folder, n, 256, suffix)
        rows = [{"id": str(i), "image": name} for i, name in enumerate(names)]
        op._hashes(rows[:64], ctx)  # starts the process pool: once per process, not per image
        before = load()
        start, cpu = time.perf_counter(), cpu_seconds()
        for lo in range(0, len(rows), op.batch_size):
            op._hashes(rows[lo:lo + op.batch_size], ctx)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        print(f"dedupe hashing {suffix[1:]:4} 256px  {n / wall:8.0f} images/s  ({n} images, {wall:.1f} s wall, "
              f"{n / cpu:.0f} images per CPU-s; {before}, after {load()})", flush=True)


def synthetic_codes(n: int, seed: int = 0) -> np.ndarray:
    """``n`` pHash-like codes: 70% distinct, 30% near copies (1-6 bits flipped) of earlier ones."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=n, dtype=np.uint64) << np.uint64(1) | rng.integers(0, 2, n, dtype=np.uint64)
    copies = np.flatnonzero(rng.random(n) < 0.3)
    copies = copies[copies > 0]
    sources = (rng.random(len(copies)) * copies).astype(np.int64)
    codes[copies] = codes[sources]
    for _ in range(3):
        flip = rng.random(len(copies)) < 0.7
        bits = np.uint64(1) << rng.integers(0, 64, len(copies)).astype(np.uint64)
        codes[copies[flip]] ^= bits[flip]
    return codes


def bench_index(n: int, pairs_slice: int) -> None:
    from pixmill_safety.hash_index import all_pairs_nearest

    codes = synthetic_codes(n)
    rows = [{"id": str(i), "image_hashes": {"sha256": f"{i:064x}", "phash": f"{int(c):016x}"}}
            for i, c in enumerate(codes)]
    del codes
    op = get_registry().get_operator("dedupe-images")()
    ctx = ctx_for(Path(tempfile.gettempdir()))
    base = rss_mb()
    op.start(ctx)
    before = load()
    start, cpu = time.perf_counter(), time.process_time()
    dups = 0
    for lo in range(0, n, op.batch_size):
        for out in op.process(rows[lo:lo + op.batch_size], ctx):
            dups += out["duplicate_of"] is not None
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"dedupe index   {n} hashes  {seconds:6.1f} s wall, {cpu:6.1f} CPU-s  ({dups} duplicates at "
          f"--max-distance {op.config['max_distance']}, peak RSS {rss_mb():.0f} MB, {rss_mb() - base:.0f} MB "
          f"above the rows; {before}, after {load()})", flush=True)
    small = synthetic_codes(pairs_slice, seed=1)
    pair_cpu = time.process_time()
    all_pairs_nearest(small, op.config["max_distance"])
    pair_cpu = time.process_time() - pair_cpu
    scaled = pair_cpu * (n / pairs_slice) ** 2
    print(f"all-pairs      {pairs_slice} hashes  {pair_cpu:6.1f} CPU-s  -> {n} hashes ~{scaled:,.0f} CPU-s "
          f"({scaled / cpu:,.0f}x the index)", flush=True)


def bench_stats(folder: Path, n: int) -> None:
    names = make_images(folder, n, 512, ".png", copies=False)
    rows = [{"id": str(i), "image": name} for i, name in enumerate(names)]
    ctx = ctx_for(folder)
    for pixels in (True, False):
        op = get_registry().get_operator("image-stats")(pixels=pixels)
        op.process([dict(r) for r in rows[:8]], ctx)  # warm: imports, OpenCV's check
        before = load()
        start, cpu = time.perf_counter(), cpu_seconds()
        for lo in range(0, n, op.batch_size):
            op.process([dict(r) for r in rows[lo:lo + op.batch_size]], ctx)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        print(f"image-stats    512px png {'pixels' if pixels else 'header'}  {n / wall:8.0f} images/s  "
              f"({n / cpu:.0f} images per CPU-s; {before}, after {load()})", flush=True)


def bench_nsfw(folder: Path, n: int) -> None:
    names = make_images(folder, n, 512, ".png")
    ctx = ctx_for(folder)
    figures = {}
    for batch in (1, 16):
        op = get_registry().get_operator("detect-nsfw")(batch_size=batch)
        op.start(ctx)
        op.process([{"id": "warm", "image": names[0]}], ctx)
        rows = [{"id": str(i), "image": name} for i, name in enumerate(names)]
        start = time.perf_counter()
        for lo in range(0, n, batch):
            op.process(rows[lo:lo + batch], ctx)
        figures[batch] = n / (time.perf_counter() - start)
    print(f"detect-nsfw    512px cpu  batch 1 {figures[1]:6.1f} images/s  batch 16 {figures[16]:6.1f} images/s "
          f"({figures[16] / figures[1]:.2f}x)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="256 px images to hash (each format)")
    parser.add_argument("--codes", type=int, default=1_000_000, help="rows with cached hashes for the index")
    parser.add_argument("--pairs-slice", type=int, default=20_000, help="hashes for the all-pairs comparison")
    parser.add_argument("--stats-images", type=int, default=1000)
    parser.add_argument("--nsfw-images", type=int, default=64)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pixmill-bench-curation")
    parser.add_argument("--only", default="hash,index,stats,nsfw", help="comma list of parts to run")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} CPUs  python {sys.version.split()[0]}", flush=True)
    if "index" in parts:  # first: its peak RSS must not include the other parts' memory
        bench_index(args.codes, args.pairs_slice)
    if "hash" in parts:
        bench_hashing(args.cache, args.images)
    if "stats" in parts:
        bench_stats(args.cache, args.stats_images)
    if "nsfw" in parts:
        bench_nsfw(args.cache, args.nsfw_images)


if __name__ == "__main__":
    main()
