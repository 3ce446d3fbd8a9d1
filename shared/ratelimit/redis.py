"""Rate limits in Redis, shared by every gateway and worker process.

Each call is one Lua script (EVALSHA): one round trip, atomic, so concurrent processes never
both take the last unit of a budget. Windows run on Redis's own clock, so the processes'
clocks do not have to agree.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.ratelimit.base import Decision, RateLimiter, RateLimitUnavailable

#: Prefix of every key this module writes.
KEY_PREFIX = "kai:rl:"

#: Longest wait for Redis on connect and on each reply, in seconds. A limiter sits on the
#: hot path of every request: when Redis is unreachable the caller must hear so quickly and
#: decide (see the gateway's fail-open), not hang.
SOCKET_TIMEOUT_SECONDS = 0.25

#: One immediate retry: a pooled connection left dead by a Redis restart fails once, the
#: retry reconnects. More would only multiply the wait when Redis is really down.
RETRIES = 1

# INCRBY the cost, and start the window on the key's first call (PTTL -1: no expiry set yet).
_HIT = """
local count = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]))
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {count, ttl}
"""

# A sorted set of reservation names scored by when they were made; names older than the
# window fall out first. Returns {allowed, held, ms until the oldest leaves}.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local held = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return {1, held, 0}
end
if held >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, held, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, held + 1, 0}
"""


class RedisRateLimiter(RateLimiter):
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), RETRIES),
        )
        self._hit = self._redis.register_script(_HIT)
        self._reserve = self._redis.register_script(_RESERVE)

    def hit(self, key: str, limit: int, window_ms: int, cost: int = 1) -> Decision:
        count, ttl = self._call(self._hit, key, window_ms, cost)
        return Decision(count <= limit, limit, max(0, limit - count), ttl)

    def reserve(self, key: str, name: str, limit: int, window_ms: int) -> Decision:
        allowed, held, reset = self._call(self._reserve, key, window_ms, limit, name)
        return Decision(bool(allowed), limit, max(0, limit - held), reset)

    def release(self, key: str, name: str) -> None:
        try:
            self._redis.zrem(KEY_PREFIX + key, name)
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"redis: {exc}") from exc

    def close(self) -> None:
        self._redis.close()

    def _call(self, script: Any, key: str, *args: int | str) -> list[int]:
        try:
            return [int(v) for v in script(keys=[KEY_PREFIX + key], args=list(args))]
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"redis: {exc}") from exc
