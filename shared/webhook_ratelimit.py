"""Per-endpoint rate limits (``rateLimitPerSecond``): at most N requests to an endpoint in
any one-second window, across every worker process.

A message over the limit is not attempted: it goes back to the broker for the rest of the
window without using up one of its attempts. Two implementations of one contract, side by
side: Redis-backed when REDIS_URL is set (shared by every worker process), in-process
otherwise.
"""

from __future__ import annotations

import abc
import threading
import time

import redis

from shared.config import Settings

#: Redis key prefix of the per-second counters.
KEY_PREFIX = "kai:webhook-rate:"
WINDOW_MS = 1000


class RateLimiter(abc.ABC):
    @abc.abstractmethod
    def acquire(self, key: str, limit: int) -> int:
        """Take one request of ``key``'s budget: 0 when granted, else the milliseconds until
        the next window."""


def _window(now_ms: int) -> tuple[int, int]:
    return now_ms // WINDOW_MS, WINDOW_MS - now_ms % WINDOW_MS


class LocalRateLimiter(RateLimiter):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}

    def acquire(self, key: str, limit: int) -> int:
        window, remaining = _window(int(time.time() * 1000))
        with self._lock:
            current, count = self._counts.get(key, (window, 0))
            if current != window:
                count = 0
            if count >= limit:
                return remaining
            self._counts[key] = (window, count + 1)
            return 0


class RedisRateLimiter(RateLimiter):
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def acquire(self, key: str, limit: int) -> int:
        window, remaining = _window(int(time.time() * 1000))
        counter = f"{KEY_PREFIX}{key}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(counter)
        pipe.pexpire(counter, 2 * WINDOW_MS)
        count = int(pipe.execute()[0])
        return 0 if count <= limit else remaining


def build_rate_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url is None:
        return LocalRateLimiter()
    return RedisRateLimiter(redis.Redis.from_url(settings.redis_url))
