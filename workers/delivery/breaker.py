"""Circuit breakers: stop hammering a peer that is down (a webhook endpoint, an SMTP relay,
an SMS provider).

After ``threshold`` consecutive failed attempts a peer's breaker *opens*: attempts are not
sent (the caller reschedules them, or turns to another provider) until ``cooldown`` has
passed. Then one attempt, the probe, goes through (half-open); its success closes the
breaker, its failure opens it again.

Two implementations of one contract, side by side: Redis-backed when REDIS_URL is set (every
worker process shares the state), in-process otherwise (the embedded default).
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass

import redis

from shared.config import Settings
from shared.webhooks.circuit import WEBHOOK_PREFIX, keys


class CircuitBreaker(abc.ABC):
    """Per-peer breaker state; thread-safe."""

    def __init__(self, threshold: int, cooldown_ms: int) -> None:
        self.threshold = threshold
        self.cooldown_ms = cooldown_ms

    @abc.abstractmethod
    def wait_ms(self, key: str) -> int:
        """0 when an attempt to ``key`` may go now (possibly as the probe), else how long to
        wait before asking again."""

    @abc.abstractmethod
    def record(self, key: str, *, ok: bool) -> None:
        """The outcome of an attempt that was let through."""


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    probe_until: float = 0.0


class LocalBreaker(CircuitBreaker):
    """State in this process's memory."""

    def __init__(self, threshold: int, cooldown_ms: int) -> None:
        super().__init__(threshold, cooldown_ms)
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def wait_ms(self, key: str) -> int:
        now = time.monotonic()
        with self._lock:
            state = self._states.get(key)
            if state is None or state.failures < self.threshold:
                return 0
            if now < state.open_until:
                return max(1, int((state.open_until - now) * 1000))
            if now < state.probe_until:
                return max(1, int((state.probe_until - now) * 1000))
            state.probe_until = now + self.cooldown_ms / 1000
            return 0

    def record(self, key: str, *, ok: bool) -> None:
        with self._lock:
            if ok:
                self._states.pop(key, None)
                return
            state = self._states.setdefault(key, _State())
            state.failures += 1
            state.probe_until = 0.0
            if state.failures >= self.threshold:
                state.open_until = time.monotonic() + self.cooldown_ms / 1000


class RedisBreaker(CircuitBreaker):
    """State in Redis, shared by every worker process: a failure counter, an ``open`` key
    that expires after the cooldown, and a ``probe`` key taken with SET NX so one process
    sends the probe."""

    def __init__(
        self, client: redis.Redis, threshold: int, cooldown_ms: int, *, prefix: str = WEBHOOK_PREFIX
    ) -> None:
        super().__init__(threshold, cooldown_ms)
        self._redis = client
        self._prefix = prefix

    def _keys(self, key: str) -> tuple[str, str, str]:
        return keys(self._prefix, key)

    def wait_ms(self, key: str) -> int:
        failures_key, open_key, probe_key = self._keys(key)
        failures = int(self._redis.get(failures_key) or 0)
        if failures < self.threshold:
            return 0
        remaining = int(self._redis.pttl(open_key))
        if remaining > 0:
            return remaining
        if self._redis.set(probe_key, "1", nx=True, px=self.cooldown_ms):
            return 0
        return max(1, int(self._redis.pttl(probe_key)))

    def record(self, key: str, *, ok: bool) -> None:
        failures_key, open_key, probe_key = self._keys(key)
        if ok:
            self._redis.delete(failures_key, open_key, probe_key)
            return
        # The counter lives as long as breaker state matters; a quiet endpoint starts afresh.
        idle_expiry_ms = self.cooldown_ms * 10
        pipe = self._redis.pipeline()
        pipe.incr(failures_key)
        pipe.pexpire(failures_key, idle_expiry_ms)
        pipe.delete(probe_key)
        failures = int(pipe.execute()[0])
        if failures >= self.threshold:
            self._redis.set(open_key, "1", px=self.cooldown_ms)


def build_breaker(
    settings: Settings, *, threshold: int, cooldown_ms: int, prefix: str = WEBHOOK_PREFIX
) -> CircuitBreaker:
    """Shared through Redis when REDIS_URL is set, else this process's own."""
    if settings.redis_url is None:
        return LocalBreaker(threshold, cooldown_ms)
    client = redis.Redis.from_url(settings.redis_url)
    return RedisBreaker(client, threshold, cooldown_ms, prefix=prefix)
