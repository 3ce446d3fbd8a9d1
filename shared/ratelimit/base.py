"""The rate-limiter contract: budgets of requests per key and time window, shared by every
process that uses the same backend.

Two kinds of budget, both answered with a :class:`Decision`:

- :meth:`RateLimiter.hit` counts every call in a fixed window that starts with the key's
  first call (gateway requests, webhook endpoints' ``rateLimitPerSecond``). One call, one
  backend round trip.
- :meth:`RateLimiter.reserve` keeps a sliding window of named reservations (one per
  message): reserving the same name again costs nothing, and :meth:`RateLimiter.release`
  gives a reservation back. Per-recipient limits use it, so a retried message counts once
  and a message that was not sent counts not at all.

A backend that cannot answer raises :class:`RateLimitUnavailable`; what to do then (usually
let the request through) is the caller's decision.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

from shared.errors import KaiError


class RateLimitUnavailable(KaiError):
    """The limiter's backend (Redis) did not answer."""


@dataclass(frozen=True)
class Decision:
    """The answer for one call: whether it is within the budget, and the budget's state
    after it (what the ``RateLimit-*`` headers report)."""

    allowed: bool
    limit: int
    remaining: int
    #: Milliseconds until the window frees budget again (the whole budget for
    #: :meth:`RateLimiter.hit`, the oldest reservation for :meth:`RateLimiter.reserve`).
    reset_ms: int

    @property
    def reset_seconds(self) -> int:
        """``reset_ms`` in whole seconds, rounded up (HTTP headers count in seconds)."""
        return max(1, math.ceil(self.reset_ms / 1000))


class RateLimiter(abc.ABC):
    @abc.abstractmethod
    def hit(self, key: str, limit: int, window_ms: int, cost: int = 1) -> Decision:
        """Count ``cost`` calls of ``key`` (a batch of that many messages): allowed while the
        window holds at most ``limit``. Refused calls count too (they do not extend the
        window)."""

    @abc.abstractmethod
    def reserve(self, key: str, name: str, limit: int, window_ms: int) -> Decision:
        """Add reservation ``name`` to ``key``'s sliding window of ``window_ms`` if fewer
        than ``limit`` are held; allowed at no cost if ``name`` is already held."""

    @abc.abstractmethod
    def release(self, key: str, name: str) -> None:
        """Give reservation ``name`` back (nothing happens if it is not held)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most limiters hold nothing to close)
        """Release connections; the default holds none."""
