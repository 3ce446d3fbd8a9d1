"""After a failed attempt: whether it is tried again (:func:`after_failure`), and when:
exponential backoff with jitter, capped by the channel's policy, unless the provider said
when (``Retry-After``)."""

from __future__ import annotations

import enum
import random

from shared.config import RetryPolicy
from shared.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError

#: Spread of retry delays (±20%) so messages that failed together don't retry together.
JITTER = 0.2


def backoff_ms(policy: RetryPolicy, attempt: int, *, rng: random.Random | None = None) -> int:
    """Exponential backoff after ``attempt`` failed attempts, with jitter, capped."""
    base = min(policy.base_delay_ms * 2 ** max(attempt - 1, 0), policy.max_delay_ms)
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return max(1, min(int(base * spread), policy.max_delay_ms))


def retry_delay_ms(policy: RetryPolicy, attempt: int, error: DeliveryError) -> int:
    """The provider's own hint (Retry-After) wins, clamped to the policy's ceiling."""
    hint = error.retry_after_ms if isinstance(error, TemporaryDeliveryError) else None
    if hint is not None:
        return max(0, min(hint, policy.max_delay_ms))
    return backoff_ms(policy, attempt)


class AfterFailure(enum.Enum):
    """What follows a failed attempt."""

    FAIL = "fail"  # retrying cannot help: failed now
    GIVE_UP = "give_up"  # worth retrying, but no attempt is left: failed and dead-lettered
    RETRY = "retry"  # another attempt after a delay


def after_failure(error: DeliveryError, attempt: int, max_attempts: int) -> AfterFailure:
    """The error's type decides first (a permanent error is never retried), then the attempts
    left."""
    if isinstance(error, PermanentDeliveryError):
        return AfterFailure.FAIL
    if attempt >= max_attempts:
        return AfterFailure.GIVE_UP
    return AfterFailure.RETRY
