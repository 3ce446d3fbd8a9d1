"""Both limiters of the contract, side by side: in-process and on the real Redis. The same
table of behaviours runs against each, so the embedded default and production agree."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator

import pytest

from shared.ratelimit import MemoryRateLimiter, RateLimiter, RateLimitUnavailable, RedisRateLimiter
from tests.gateway.server import free_port
from tests.waiting import wait_until


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    made: RateLimiter
    if request.param == "memory":
        made = MemoryRateLimiter()
    else:
        made = RedisRateLimiter(request.getfixturevalue("redis_url"))
    yield made
    made.close()


def fresh_key() -> str:
    return "test:" + secrets.token_hex(6)


def test_hit_allows_the_limit_then_refuses_until_the_window_ends(limiter: RateLimiter) -> None:
    """Given a budget of 3 per 60 s, the first three calls are allowed with the remaining
    count going down, the fourth is refused with the wait until the window ends."""
    key = fresh_key()

    answers = [limiter.hit(key, 3, 60_000) for _ in range(4)]

    assert [a.allowed for a in answers] == [True, True, True, False]
    assert [a.remaining for a in answers] == [2, 1, 0, 0]
    assert all(a.limit == 3 for a in answers)
    assert 55_000 < answers[-1].reset_ms <= 60_000
    assert answers[-1].reset_seconds == 60


def test_hit_budgets_are_per_key(limiter: RateLimiter) -> None:
    """Spending one key's budget leaves another key's untouched."""
    spent, other = fresh_key(), fresh_key()
    limiter.hit(spent, 1, 60_000)

    assert not limiter.hit(spent, 1, 60_000).allowed
    assert limiter.hit(other, 1, 60_000).allowed


def test_hit_budget_comes_back_with_the_next_window(limiter: RateLimiter) -> None:
    """Once the window has passed, the full budget is available again."""
    key = fresh_key()
    assert limiter.hit(key, 1, 200).allowed
    assert not limiter.hit(key, 1, 200).allowed

    wait_until(lambda: limiter.hit(key, 1, 200).allowed, timeout=5, message="the window never ended")


def test_concurrent_hits_never_grant_more_than_the_limit(limiter: RateLimiter) -> None:
    """Given 8 threads racing for a budget of 25, exactly 25 calls are allowed."""
    key = fresh_key()
    allowed: list[bool] = []
    lock = threading.Lock()

    def spend() -> None:
        for _ in range(10):
            answer = limiter.hit(key, 25, 60_000).allowed
            with lock:
                allowed.append(answer)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert allowed.count(True) == 25 and len(allowed) == 80


def test_reserve_counts_each_name_once(limiter: RateLimiter) -> None:
    """Reserving the same name again (a retried message) is allowed without using budget."""
    key = fresh_key()

    assert limiter.reserve(key, "m1", 2, 60_000).remaining == 1
    assert limiter.reserve(key, "m1", 2, 60_000).allowed
    assert limiter.reserve(key, "m2", 2, 60_000).remaining == 0
    refused = limiter.reserve(key, "m3", 2, 60_000)

    assert not refused.allowed
    assert 55_000 < refused.reset_ms <= 60_000
    assert limiter.reserve(key, "m1", 2, 60_000).allowed  # still held: no new place needed


def test_a_released_reservation_frees_its_place(limiter: RateLimiter) -> None:
    """A message whose send failed gives its place back, and another may take it."""
    key = fresh_key()
    limiter.reserve(key, "m1", 1, 60_000)
    assert not limiter.reserve(key, "m2", 1, 60_000).allowed

    limiter.release(key, "m1")

    assert limiter.reserve(key, "m2", 1, 60_000).allowed
    limiter.release(key, "never-held")  # harmless


def test_reservations_leave_the_sliding_window(limiter: RateLimiter) -> None:
    """A reservation older than the window no longer counts."""
    key = fresh_key()
    assert limiter.reserve(key, "m1", 1, 300).allowed
    assert not limiter.reserve(key, "m2", 1, 300).allowed

    wait_until(lambda: limiter.reserve(key, "m2", 1, 300).allowed, timeout=5, message="m1 never left")


def test_concurrent_reservations_never_exceed_the_limit(limiter: RateLimiter) -> None:
    """Given 40 messages racing for 10 places, exactly 10 get one."""
    key = fresh_key()
    names = [f"m{n}" for n in range(40)]
    granted: list[str] = []
    lock = threading.Lock()

    def take(chunk: list[str]) -> None:
        for name in chunk:
            if limiter.reserve(key, name, 10, 60_000).allowed:
                with lock:
                    granted.append(name)

    threads = [threading.Thread(target=take, args=(names[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(granted) == 10


@pytest.mark.parametrize(
    "call",
    [
        lambda limiter: limiter.hit("k", 1, 1000),
        lambda limiter: limiter.reserve("k", "m", 1, 1000),
        lambda limiter: limiter.release("k", "m"),
    ],
    ids=["hit", "reserve", "release"],
)
def test_an_unreachable_redis_raises_rate_limit_unavailable(call: Callable[[RateLimiter], object]) -> None:
    """Given a REDIS_URL on a closed loopback port, every call says the backend is down
    (quickly, and as this project's error, not the client library's)."""
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")

    with pytest.raises(RateLimitUnavailable):
        call(limiter)
