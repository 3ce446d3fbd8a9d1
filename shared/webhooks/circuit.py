"""Where a circuit breaker keeps its state in Redis, and reading it back: the workers'
breakers (workers.delivery.breaker) write it; the gateway reads an endpoint's for
``GET /api/webhooks/configurations/{id}`` (``circuit``) and the console, without importing
a worker.

Per peer: a consecutive-failure counter, an ``open`` key that expires after the cooldown,
and a ``probe`` key the process sending the probe holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import redis

#: Redis key prefix of webhook endpoints' breaker state.
WEBHOOK_PREFIX = "kai:webhook-breaker:"


def keys(prefix: str, peer: str) -> tuple[str, str, str]:
    """The failure counter's, the open flag's and the probe's keys of ``peer``."""
    base = prefix + peer
    return base + ":failures", base + ":open", base + ":probe"


@dataclass(frozen=True)
class Circuit:
    #: ``closed`` (attempts go), ``open`` (held back for ``retry_in_ms``) or ``half_open``
    #: (the cooldown is over: the next attempt is a probe).
    state: str
    consecutive_failures: int
    retry_in_ms: int | None

    def view(self) -> dict[str, object]:
        return {
            "state": self.state,
            "consecutiveFailures": self.consecutive_failures,
            "retryInMs": self.retry_in_ms,
        }


def read(client: redis.Redis, peer: str, threshold: int, prefix: str = WEBHOOK_PREFIX) -> Circuit:
    failures_key, open_key, _probe_key = keys(prefix, peer)
    pipe = client.pipeline()
    pipe.get(failures_key)
    pipe.pttl(open_key)
    raw_failures, remaining = pipe.execute()
    failures = int(raw_failures or 0)
    if failures < threshold:
        return Circuit("closed", failures, None)
    if int(remaining) > 0:
        return Circuit("open", failures, int(remaining))
    return Circuit("half_open", failures, 0)


#: How long a reader waits for Redis before answering without the circuit's state.
READ_TIMEOUT_SECONDS = 1.0


@lru_cache(maxsize=4)
def reader(url: str) -> redis.Redis:
    """One client (and connection pool) per process and Redis URL for reading circuits."""
    return redis.Redis.from_url(
        url, socket_timeout=READ_TIMEOUT_SECONDS, socket_connect_timeout=READ_TIMEOUT_SECONDS
    )
