"""FailOpen: a limiter whose backend is down lets calls through, says so once, counts it, and
leaves the backend alone for a pause instead of paying a timeout per call."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from shared.ratelimit import Decision, FailOpen, RateLimiter, RateLimitUnavailable


class DownLimiter(RateLimiter):
    """A backend that never answers, counting how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def hit(self, key: str, limit: int, window_ms: int, cost: int = 1) -> Decision:
        self.calls += 1
        raise RateLimitUnavailable("redis: connection refused")

    def reserve(self, key: str, name: str, limit: int, window_ms: int) -> Decision:
        self.calls += 1
        raise RateLimitUnavailable("redis: connection refused")

    def release(self, key: str, name: str) -> None:
        self.calls += 1
        raise RateLimitUnavailable("redis: connection refused")


def unavailable(component: str) -> float:
    return REGISTRY.get_sample_value("kai_rate_limit_unavailable_total", {"component": component}) or 0.0


def test_calls_pass_unchecked_and_the_backend_is_paused(caplog: pytest.LogCaptureFixture) -> None:
    """Given a backend that is down, when ten checks are made, then each answers None (let
    through), the backend was asked once, one warning was logged and the metric counts all ten."""
    backend = DownLimiter()
    guard = FailOpen(backend, "test_failopen")
    before = unavailable("test_failopen")

    answers = [guard.hit("k", 1, 1000) for _ in range(5)]
    answers += [guard.reserve("k", "m", 1, 1000) for _ in range(5)]
    guard.release("k", "m")

    assert answers == [None] * 10
    assert backend.calls == 1
    assert unavailable("test_failopen") - before == 11
    warnings = [r for r in caplog.records if "ratelimit.unavailable" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
