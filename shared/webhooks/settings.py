"""Settings of configured webhook endpoints (``/api/webhooks/configurations``).

Kept apart from :mod:`shared.config` so the main settings object gains one field, and read
with the same rules: named defaults with units, clear errors at start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.envvars import int_setting, parse_csv
from shared.errors import ConfigError
from shared.netguard import IPNetwork, parse_subnets

#: Delays before each retry of a configured endpoint, after the immediate first attempt:
#: Svix's schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), about 28 hours in all, long
#: enough to ride out a receiver's bad day. Each delay gets ±20% jitter.
DEFAULT_RETRY_SCHEDULE_MS = (5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000)

#: Retry-After on 429/502/503/504 is honoured up to this long; a receiver asking for more
#: gets this (it can always answer 429 again).
DEFAULT_RETRY_AFTER_MAX_MS = 60 * 60_000

#: After a secret is regenerated, the old one keeps signing (a second signature) this long,
#: so receivers can switch without dropping a single delivery.
DEFAULT_SECRET_GRACE_MS = 24 * 60 * 60_000

#: An endpoint failing without a single success for this long is disabled (Svix: 5 days).
DEFAULT_DISABLE_AFTER_MS = 5 * 24 * 60 * 60_000

#: Consecutive failed attempts that open an endpoint's circuit breaker, and how long it
#: stays open before one probe request is let through.
DEFAULT_BREAKER_THRESHOLD = 5
DEFAULT_BREAKER_COOLDOWN_MS = 30_000

#: How long ``POST .../test`` waits for the test delivery's first attempt.
DEFAULT_TEST_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class WebhookSettings:
    #: WEBHOOK_ALLOWED_SUBNETS: private subnets webhooks may reach although
    #: WEBHOOK_ALLOW_PRIVATE_NETWORKS is false (e.g. a partner's VPN range).
    allowed_subnets: tuple[IPNetwork, ...] = ()
    retry_schedule_ms: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_MS
    retry_after_max_ms: int = DEFAULT_RETRY_AFTER_MAX_MS
    secret_grace_ms: int = DEFAULT_SECRET_GRACE_MS
    disable_after_ms: int = DEFAULT_DISABLE_AFTER_MS
    breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD
    breaker_cooldown_ms: int = DEFAULT_BREAKER_COOLDOWN_MS
    test_timeout_ms: int = DEFAULT_TEST_TIMEOUT_MS
    #: WEBHOOK_ALERT_EMAIL: told when an endpoint without its own ``ownerEmail`` is disabled.
    alert_email: str | None = None
    #: WEBHOOK_ALERT_URL: an operational webhook (signed with WEBHOOK_SECRET) told whenever
    #: any endpoint is disabled.
    alert_url: str | None = None
    #: WEBHOOK_ENCRYPTION_KEYS: Fernet keys (comma-separated, newest first) that encrypt
    #: endpoint secrets at rest; empty stores them as they are.
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> WebhookSettings:
        def items(name: str) -> list[str]:
            return list(parse_csv(get(name) or ""))

        try:
            subnets = parse_subnets(items("WEBHOOK_ALLOWED_SUBNETS"))
        except ValueError as exc:
            raise ConfigError(f"WEBHOOK_ALLOWED_SUBNETS: {exc}") from None
        schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_MS
        if items("WEBHOOK_RETRY_SCHEDULE"):
            try:
                schedule = parse_schedule(items("WEBHOOK_RETRY_SCHEDULE"))
            except ValueError as exc:
                raise ConfigError(f"WEBHOOK_RETRY_SCHEDULE: {exc}") from None
        return cls(
            allowed_subnets=subnets,
            retry_schedule_ms=schedule,
            retry_after_max_ms=int_setting(get, "WEBHOOK_RETRY_AFTER_MAX", DEFAULT_RETRY_AFTER_MAX_MS),
            secret_grace_ms=int_setting(get, "WEBHOOK_SECRET_GRACE_PERIOD", DEFAULT_SECRET_GRACE_MS),
            disable_after_ms=int_setting(get, "WEBHOOK_DISABLE_AFTER", DEFAULT_DISABLE_AFTER_MS, minimum=1),
            breaker_threshold=int_setting(
                get, "WEBHOOK_BREAKER_THRESHOLD", DEFAULT_BREAKER_THRESHOLD, minimum=1
            ),
            breaker_cooldown_ms=int_setting(
                get, "WEBHOOK_BREAKER_COOLDOWN", DEFAULT_BREAKER_COOLDOWN_MS, minimum=1
            ),
            test_timeout_ms=int_setting(get, "WEBHOOK_TEST_TIMEOUT", DEFAULT_TEST_TIMEOUT_MS, minimum=1),
            encryption_keys=tuple(items("WEBHOOK_ENCRYPTION_KEYS")),
            alert_email=get("WEBHOOK_ALERT_EMAIL"),
            alert_url=get("WEBHOOK_ALERT_URL"),
        )


#: Longest retry schedule an endpoint may ask for, and its longest single delay (1 day).
MAX_SCHEDULE_STEPS = 20
MAX_SCHEDULE_DELAY_MS = 24 * 60 * 60_000


def parse_schedule(raw: list[str] | list[int]) -> tuple[int, ...]:
    """Retry delays in milliseconds; ValueError saying what is wrong."""
    if len(raw) > MAX_SCHEDULE_STEPS:
        raise ValueError(f"at most {MAX_SCHEDULE_STEPS} retries")
    delays = []
    for item in raw:
        value = int(item)
        if not 0 <= value <= MAX_SCHEDULE_DELAY_MS:
            raise ValueError(f"each delay must be between 0 and {MAX_SCHEDULE_DELAY_MS} ms")
        delays.append(value)
    return tuple(delays)
