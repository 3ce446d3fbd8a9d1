"""The retry rules in isolation: backoff with jitter, the provider's Retry-After hint, and
whether a failed attempt is retried at all."""

from __future__ import annotations

import random

import pytest

from shared.config import RetryPolicy
from shared.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from workers.delivery.retry import JITTER, AfterFailure, after_failure, backoff_ms, retry_delay_ms

POLICY = RetryPolicy(max_retries=5, base_delay_ms=1_000, max_delay_ms=60_000)


@pytest.mark.parametrize(("attempt", "base"), [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000), (6, 32_000)])
def test_backoff_doubles_from_the_base_within_the_jitter(attempt: int, base: int) -> None:
    """Given the n-th failed attempt, then the delay is base·2^(n-1), spread by ±20%."""
    rng = random.Random(attempt)

    delays = [backoff_ms(POLICY, attempt, rng=rng) for _ in range(200)]

    assert all(base * (1 - JITTER) <= d <= base * (1 + JITTER) for d in delays)
    assert len(set(delays)) > 50, "jitter must spread messages that failed together"


def test_backoff_is_capped_by_the_policy() -> None:
    """Given many failed attempts, then the delay never exceeds the policy's ceiling, jitter
    included."""
    delays = [backoff_ms(POLICY, 30, rng=random.Random(n)) for n in range(100)]

    assert max(delays) <= POLICY.max_delay_ms
    assert min(delays) >= POLICY.max_delay_ms * (1 - JITTER)


@pytest.mark.parametrize(("hint", "expected"), [(7_000, 7_000), (0, 0), (10**9, 60_000)])
def test_retry_after_wins_and_is_clamped(hint: int, expected: int) -> None:
    """Given a temporary error carrying Retry-After, then that wait is used, clamped to the
    policy's ceiling, without jitter."""
    error = TemporaryDeliveryError("busy", code="http_503", retry_after_ms=hint)

    assert retry_delay_ms(POLICY, 1, error) == expected


def test_without_a_hint_the_backoff_applies() -> None:
    error = TemporaryDeliveryError("down", code="http_500")

    assert 1_600 <= retry_delay_ms(POLICY, 2, error) <= 2_400


@pytest.mark.parametrize(
    ("error", "attempt", "max_attempts", "expected"),
    [
        (PermanentDeliveryError("550", code="smtp_550"), 1, 6, AfterFailure.FAIL),
        (PermanentDeliveryError("550", code="smtp_550"), 6, 6, AfterFailure.FAIL),
        (TemporaryDeliveryError("451", code="smtp_451"), 1, 6, AfterFailure.RETRY),
        (TemporaryDeliveryError("451", code="smtp_451"), 5, 6, AfterFailure.RETRY),
        (TemporaryDeliveryError("451", code="smtp_451"), 6, 6, AfterFailure.GIVE_UP),
        (TemporaryDeliveryError("451", code="smtp_451"), 7, 6, AfterFailure.GIVE_UP),
        (TemporaryDeliveryError("timeout", code="http_timeout"), 1, 1, AfterFailure.GIVE_UP),
    ],
)
def test_the_error_type_then_the_attempts_left_decide(
    error: DeliveryError, attempt: int, max_attempts: int, expected: AfterFailure
) -> None:
    """A permanent error is never retried; a temporary one is while attempts are left, then
    given up (failed and dead-lettered)."""
    assert after_failure(error, attempt, max_attempts) is expected
