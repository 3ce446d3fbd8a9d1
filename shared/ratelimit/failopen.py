"""What a limit check does when its backend is down: let the call through.

Delivering notifications matters more than limiting them, so a Redis outage must not stop
the gateway or the workers. Each failure is logged as a warning and counted in
``kai_rate_limit_unavailable_total``; after one, the backend is left alone for
:data:`PAUSE_AFTER_FAILURE_SECONDS`, so an outage costs at most one timeout per pause and
process instead of one per request (the gateway's check runs on its event loop).
"""

from __future__ import annotations

import threading
import time

from shared import metrics
from shared.logging import get_logger
from shared.ratelimit.base import Decision, RateLimiter, RateLimitUnavailable

log = get_logger(__name__)

#: After a failed call, checks pass unchecked this long before the backend is tried again.
PAUSE_AFTER_FAILURE_SECONDS = 5.0


class FailOpen:
    """Calls a :class:`RateLimiter`; ``None`` instead of a decision when it cannot answer."""

    def __init__(self, limiter: RateLimiter, component: str) -> None:
        self.limiter = limiter
        self.component = component
        self._lock = threading.Lock()
        self._paused_until = 0.0

    def hit(self, key: str, limit: int, window_ms: int, cost: int = 1) -> Decision | None:
        if self._paused():
            return None
        try:
            return self.limiter.hit(key, limit, window_ms, cost)
        except RateLimitUnavailable as exc:
            self._failed(exc)
            return None

    def reserve(self, key: str, name: str, limit: int, window_ms: int) -> Decision | None:
        if self._paused():
            return None
        try:
            return self.limiter.reserve(key, name, limit, window_ms)
        except RateLimitUnavailable as exc:
            self._failed(exc)
            return None

    def release(self, key: str, name: str) -> None:
        if self._paused():
            return  # the reservation, if any, leaves the window by itself
        try:
            self.limiter.release(key, name)
        except RateLimitUnavailable as exc:
            self._failed(exc)

    def close(self) -> None:
        self.limiter.close()

    def _paused(self) -> bool:
        if time.monotonic() >= self._paused_until:
            return False
        metrics.RATE_LIMIT_UNAVAILABLE.labels(self.component).inc()
        return True

    def _failed(self, exc: RateLimitUnavailable) -> None:
        with self._lock:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
        metrics.RATE_LIMIT_UNAVAILABLE.labels(self.component).inc()
        log.warning(
            "ratelimit.unavailable",
            component=self.component,
            error=str(exc),
            paused_s=PAUSE_AFTER_FAILURE_SECONDS,
        )
