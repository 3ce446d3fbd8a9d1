"""The circuit breaker contract, run against both implementations (in-process and Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.waiting import wait_until
from workers.delivery.breaker import CircuitBreaker, LocalBreaker, RedisBreaker

THRESHOLD = 2
COOLDOWN_MS = 300


@pytest.fixture(params=["local", "redis"])
def breaker(request: pytest.FixtureRequest) -> Iterator[CircuitBreaker]:
    if request.param == "local":
        yield LocalBreaker(THRESHOLD, COOLDOWN_MS)
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisBreaker(client, THRESHOLD, COOLDOWN_MS)
    client.close()


@pytest.fixture
def key() -> str:
    return f"endpoint-{uuid.uuid4()}"


def fail(breaker: CircuitBreaker, key: str, times: int) -> None:
    for _ in range(times):
        breaker.record(key, ok=False)


def test_closed_until_the_threshold(breaker: CircuitBreaker, key: str) -> None:
    fail(breaker, key, THRESHOLD - 1)

    assert breaker.wait_ms(key) == 0


def test_opens_at_the_threshold_and_lets_one_probe_through_after_the_cooldown(
    breaker: CircuitBreaker, key: str
) -> None:
    """Given THRESHOLD failures, then attempts wait; once the cooldown has passed one probe
    goes and a second caller still waits."""
    fail(breaker, key, THRESHOLD)

    assert 0 < breaker.wait_ms(key) <= COOLDOWN_MS
    wait_until(lambda: breaker.wait_ms(key) == 0, timeout=5, message="no probe after the cooldown")
    assert breaker.wait_ms(key) > 0


@pytest.mark.parametrize(
    ("probe_ok", "opened"),
    [(True, False), (False, True)],
    ids=["probe succeeds: closed", "probe fails: open again"],
)
def test_the_probe_decides(breaker: CircuitBreaker, key: str, probe_ok: bool, opened: bool) -> None:
    fail(breaker, key, THRESHOLD)
    wait_until(lambda: breaker.wait_ms(key) == 0, timeout=5, message="no probe after the cooldown")

    breaker.record(key, ok=probe_ok)

    assert (breaker.wait_ms(key) > 0) is opened


def test_endpoints_are_independent(breaker: CircuitBreaker, key: str) -> None:
    fail(breaker, key, THRESHOLD)

    assert breaker.wait_ms(key + "-other") == 0
