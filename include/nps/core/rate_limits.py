"""Rate limits kept in memory: a sliding window for the survey form's one process, and a pacer
for a sending task.

Each key (a client address, an invitation) may make `limit` requests in any `window` of
seconds. Several form processes behind a load balancer each keep their own count, so the
effective limit is the per-process limit times the number of processes. A `Pacer` spaces one
task's sends; the Airflow pool its tasks share bounds how many pace at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimit:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def hit(self, key: str) -> float | None:
        """Count one request of `key`; None when allowed, else the seconds until it would be."""
        if self.limit <= 0:
            return None
        now = self._clock()
        with self._lock:
            self._sweep(now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            return None

    def _sweep(self, now: float) -> None:
        """Forget keys with no request in the window, so memory follows the active keys only."""
        if now < self._next_sweep:
            return
        self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window}
        self._next_sweep = now + self.window


class Pacer:
    """At most `rate` events per second, evenly spaced (None: no limit); `pause(seconds)` holds the
    next event back, for a server's `Retry-After`."""

    def __init__(
        self,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1 / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self.waited = 0.0  # seconds slept so far

    def wait(self) -> None:
        """Sleep until the next event is allowed, and count it."""
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            self.waited += self._next - now
            now = self._next
        self._next = now + self.interval

    def pause(self, seconds: float) -> None:
        self._next = max(self._next, self._clock() + seconds)
