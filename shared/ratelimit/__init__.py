"""Rate limits shared by the gateway (per credential, user and endpoint group), the webhook
workers (per endpoint) and the delivery pipeline (per recipient).

``REDIS_URL`` set: :class:`~shared.ratelimit.redis.RedisRateLimiter`, one budget across every
process. Unset (the embedded default, everything in one process):
:class:`~shared.ratelimit.memory.MemoryRateLimiter`. The contract is
:class:`~shared.ratelimit.base.RateLimiter`; :class:`~shared.ratelimit.failopen.FailOpen`
is what callers on the hot path use, so a Redis outage lets traffic through.
"""

from __future__ import annotations

from shared.ratelimit.base import Decision, RateLimiter, RateLimitUnavailable
from shared.ratelimit.failopen import FailOpen
from shared.ratelimit.memory import MemoryRateLimiter
from shared.ratelimit.redis import RedisRateLimiter

__all__ = [
    "Decision",
    "FailOpen",
    "MemoryRateLimiter",
    "RateLimitUnavailable",
    "RateLimiter",
    "RedisRateLimiter",
    "build_rate_limiter",
]


def build_rate_limiter(redis_url: str | None) -> RateLimiter:
    if redis_url is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(redis_url)
