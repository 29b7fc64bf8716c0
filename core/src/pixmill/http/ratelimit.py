"""A requests-per-minute limiter for one event loop."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Spaces request starts evenly: at most ``rpm`` per minute, one every ``60 / rpm`` seconds.

    Even spacing (rather than a bucket that allows a burst of ``rpm`` at once) is what providers'
    per-minute limits tolerate best: a burst at the top of every minute is exactly what earns a 429.
    Every attempt, retries included, takes a slot, because the provider counts them all.
    """

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        # Reserve the slot before sleeping: the loop is single-threaded, so no lock is needed.
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
