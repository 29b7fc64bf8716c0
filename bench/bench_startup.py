"""`pixmill --help` wall time with every installed plugin, and the heavy modules it imports.

    python bench/bench_startup.py        # prints the median of 10 runs and the imports check
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    exe = str(Path(sys.executable).parent / "pixmill")
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    code = ("import sys; from pixmill.cli import build_cli; from pixmill.plugins import get_registry; build_cli(); "
            "print(len(get_registry().plugins), [m for m in ('torch','diffusers','transformers','openai','vllm','pyarrow','ray') "
            "if m in sys.modules])")
    plugins, heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout.strip().split(" ", 1)
    print(f"pixmill --help: median {statistics.median(times):.3f}s min {min(times):.3f}s "
          f"plugins={plugins} heavy_imports={heavy}")


if __name__ == "__main__":
    main()
