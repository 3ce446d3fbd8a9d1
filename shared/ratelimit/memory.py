"""In-process rate limits: the embedded default (no REDIS_URL), where the gateway and every
worker run in one process, so a process-wide budget is the whole budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.ratelimit.base import Decision, RateLimiter

#: Calls between sweeps of expired windows, so keys seen once do not accumulate forever.
SWEEP_EVERY = 10_000


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class MemoryRateLimiter(RateLimiter):
    def __init__(self, clock: Callable[[], int] = _now_ms) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: key → (window end, calls in the window)
        self._windows: dict[str, tuple[int, int]] = {}
        #: key → {reservation name: when it leaves the window}
        self._reservations: dict[str, dict[str, int]] = {}
        self._calls = 0

    def hit(self, key: str, limit: int, window_ms: int, cost: int = 1) -> Decision:
        with self._lock:
            now = self._tick()
            ends, count = self._windows.get(key, (0, 0))
            if ends <= now:
                ends, count = now + window_ms, 0
            count += cost
            self._windows[key] = (ends, count)
        return Decision(count <= limit, limit, max(0, limit - count), ends - now)

    def reserve(self, key: str, name: str, limit: int, window_ms: int) -> Decision:
        with self._lock:
            now = self._tick()
            held = {n: until for n, until in self._reservations.get(key, {}).items() if until > now}
            self._reservations[key] = held
            if name in held:
                return Decision(True, limit, max(0, limit - len(held)), 0)
            if len(held) >= limit:
                return Decision(False, limit, 0, min(held.values()) - now)
            held[name] = now + window_ms
            return Decision(True, limit, limit - len(held), 0)

    def release(self, key: str, name: str) -> None:
        with self._lock:
            self._reservations.get(key, {}).pop(name, None)

    def _tick(self) -> int:
        now = self._clock()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
            self._reservations = {
                k: held for k, held in self._reservations.items() if max(held.values(), default=0) > now
            }
        return now
