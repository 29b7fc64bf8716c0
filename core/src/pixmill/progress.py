"""Progress reporting: a live bar per step on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .runner import StepResult

log = logging.getLogger("pixmill.progress")


class Progress:
    """Receives the runner's progress events. The base class ignores them (library use)."""

    def step_started(self, name: str, total: int | None, cached: bool) -> None:
        """A step begins; ``total`` is the number of rows to process, when known."""

    def advanced(self, done: int, failed: int) -> None:
        """``done`` more rows finished and ``failed`` more failed."""

    def step_finished(self, result: StepResult) -> None:
        """A step ended (or was found complete in the cache)."""


class _Counting(Progress):
    def step_started(self, name: str, total: int | None, cached: bool) -> None:
        self.name, self.total, self.cached = name, total, cached
        self.done = self.failed = 0
        self.t0 = self.last = time.monotonic()

    def advanced(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed

    def rate(self) -> float:
        elapsed = time.monotonic() - self.t0
        return (self.done + self.failed) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> str:
        rate = self.rate()
        if not self.total or rate <= 0:
            return "?"
        left = max(0.0, (self.total - self.done - self.failed) / rate)
        return time.strftime("%H:%M:%S", time.gmtime(left))


class LogProgress(_Counting):
    """Plain log lines (every ``every`` seconds and at each step's end), for logs and CI."""

    def __init__(self, every: float = 10.0):
        self.every = every

    def advanced(self, done: int, failed: int) -> None:
        super().advanced(done, failed)
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            total = f"/{self.total}" if self.total else ""
            log.info("%s: %d%s rows done, %d failed, %.1f rows/s, ETA %s",
                     self.name, self.done, total, self.failed, self.rate(), self.eta())

    def step_finished(self, result: StepResult) -> None:
        if result.cached:
            log.info("%s: cached (%d rows, %d failed)", result.folder, result.rows, result.failed)
        else:
            log.info("%s: %d rows done, %d failed this run in %.1fs -> %d rows", result.folder,
                     result.new_done, result.new_failed, result.seconds, result.rows)


class BarProgress(_Counting):
    """A live one-line bar per step on a terminal: rows done/failed, rows/s, ETA."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 24):
        self.stream, self.width = stream, width

    def advanced(self, done: int, failed: int) -> None:
        super().advanced(done, failed)
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self._draw()

    def _draw(self, end: str = "") -> None:
        n = self.done + self.failed
        if self.total:
            filled = int(self.width * min(1.0, n / self.total))
            bar = "#" * filled + "-" * (self.width - filled)
            count = f"{n:,}/{self.total:,}"
        else:
            bar, count = "", f"{n:,}"
        self.stream.write(f"\r{self.name:<22} {bar} {count} rows  failed {self.failed:,}  "
                          f"{self.rate():,.1f} rows/s  ETA {self.eta()}\x1b[K{end}")
        self.stream.flush()

    def step_finished(self, result: StepResult) -> None:
        if result.cached:
            self.stream.write(f"\r{result.folder:<22} cached: {result.rows:,} rows, {result.failed:,} failed\x1b[K\n")
        else:
            self.stream.write(f"\r{result.folder:<22} done: {result.new_done:,} rows, {result.new_failed:,} failed "
                              f"in {result.seconds:.1f}s -> {result.rows:,} rows\x1b[K\n")
        self.stream.flush()


def make_progress(stream: TextIO | None = None, quiet: bool = False) -> Progress:
    """A bar on a terminal, log lines otherwise, nothing when quiet."""
    if quiet:
        return Progress()
    stream = stream or sys.stderr
    return BarProgress(stream) if stream.isatty() else LogProgress()
