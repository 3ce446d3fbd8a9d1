"""Settings of the rate limits: the gateway's budgets per endpoint group, and the delivery
pipeline's per-recipient budgets.

Kept apart from :mod:`shared.config` so the main settings object gains one field, and apart
from the :mod:`shared.ratelimit` package so reading settings imports no limiter (and no
Prometheus client: worker pools import settings before they switch the client to
multiprocess mode). A gateway
budget is written ``<count>/<period>`` with the period ``s``, ``min`` or ``h`` (``6000/min``);
a bare number is per minute; ``0`` or ``off`` lifts the group's limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from shared.envvars import parse_bool, parse_int
from shared.errors import ConfigError

#: Milliseconds in each period a budget may be written in.
PERIODS_MS = {"s": 1_000, "sec": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000, "hour": 3_600_000}

_SPEC = re.compile(r"^\s*(\d+)\s*(?:/\s*([a-z]+))?\s*$")


@dataclass(frozen=True)
class Limit:
    count: int
    window_ms: int


def parse_limit(raw: str) -> Limit | None:
    """``6000/min`` → Limit(6000, 60000); ``0`` or ``off`` → None (no limit);
    ValueError saying what is wrong."""
    if raw.strip().lower() in {"off", "none"}:
        return None
    match = _SPEC.match(raw.lower())
    if match is None or (match.group(2) is not None and match.group(2) not in PERIODS_MS):
        raise ValueError(f"expected <count>/<s|min|h> such as 6000/min, got {raw!r}")
    count = int(match.group(1))
    if count == 0:
        return None
    return Limit(count, PERIODS_MS[match.group(2) or "min"])


#: Gateway budgets, per credential and user (a server key acting for a user with X-User-Id
#: has one budget per user). Generous for real use: they stop runaway loops and stolen
#: keys, not traffic. ``send``: POST /api/messages/*, /api/notifications/test.
DEFAULT_SEND = Limit(6_000, 60_000)
#: ``events``: POST /api/events.
DEFAULT_EVENTS = Limit(6_000, 60_000)
#: ``read``: the inbox (feed, unread count, mark read, delete), stream connects, message and
#: event status. An inbox page polling every few seconds uses a few dozen a minute.
DEFAULT_READ = Limit(3_000, 60_000)
#: ``manage``: templates, rules, preferences, webhook endpoints, contacts.
DEFAULT_MANAGE = Limit(600, 60_000)

#: Most SMS one phone number receives in any hour; more are skipped. Ten covers a day's
#: worth of codes and alerts for a person and stops a loop from texting them all night.
DEFAULT_SMS_RECIPIENT_PER_HOUR = 10
#: Most emails one address receives in any hour.
DEFAULT_EMAIL_RECIPIENT_PER_HOUR = 50

#: Most pushes one user's devices get in any hour: a phone that buzzes all night is uninstalled.
DEFAULT_PUSH_RECIPIENT_PER_HOUR = 30
#: Most chat messages one Slack/Teams destination gets in any hour from us.
DEFAULT_CHAT_RECIPIENT_PER_HOUR = 60

#: The window of the per-recipient budgets.
RECIPIENT_WINDOW_MS = 3_600_000


@dataclass(frozen=True)
class RateLimitSettings:
    #: RATE_LIMIT_ENABLED: false switches the gateway's limits off (recipient limits have
    #: their own switch: 0).
    enabled: bool = True
    send: Limit | None = DEFAULT_SEND
    events: Limit | None = DEFAULT_EVENTS
    read: Limit | None = DEFAULT_READ
    manage: Limit | None = DEFAULT_MANAGE
    #: SMS_RECIPIENT_LIMIT_PER_HOUR, EMAIL_RECIPIENT_LIMIT_PER_HOUR; 0 switches it off.
    sms_recipient_per_hour: int = DEFAULT_SMS_RECIPIENT_PER_HOUR
    email_recipient_per_hour: int = DEFAULT_EMAIL_RECIPIENT_PER_HOUR
    #: PUSH_RECIPIENT_LIMIT_PER_HOUR (per user), CHAT_RECIPIENT_LIMIT_PER_HOUR (per destination).
    push_recipient_per_hour: int = DEFAULT_PUSH_RECIPIENT_PER_HOUR
    chat_recipient_per_hour: int = DEFAULT_CHAT_RECIPIENT_PER_HOUR

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> RateLimitSettings:
        def limit(name: str, default: Limit) -> Limit | None:
            raw = get(name)
            if raw is None:
                return default
            try:
                return parse_limit(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None

        def per_hour(name: str, default: int) -> int:
            # 0 switches the limit off.
            return parse_int(name, get(name) or str(default))

        return cls(
            enabled=parse_bool("RATE_LIMIT_ENABLED", get("RATE_LIMIT_ENABLED") or "true"),
            send=limit("RATE_LIMIT_SEND", DEFAULT_SEND),
            events=limit("RATE_LIMIT_EVENTS", DEFAULT_EVENTS),
            read=limit("RATE_LIMIT_READ", DEFAULT_READ),
            manage=limit("RATE_LIMIT_MANAGE", DEFAULT_MANAGE),
            sms_recipient_per_hour=per_hour("SMS_RECIPIENT_LIMIT_PER_HOUR", DEFAULT_SMS_RECIPIENT_PER_HOUR),
            email_recipient_per_hour=per_hour(
                "EMAIL_RECIPIENT_LIMIT_PER_HOUR", DEFAULT_EMAIL_RECIPIENT_PER_HOUR
            ),
            push_recipient_per_hour=per_hour(
                "PUSH_RECIPIENT_LIMIT_PER_HOUR", DEFAULT_PUSH_RECIPIENT_PER_HOUR
            ),
            chat_recipient_per_hour=per_hour(
                "CHAT_RECIPIENT_LIMIT_PER_HOUR", DEFAULT_CHAT_RECIPIENT_PER_HOUR
            ),
        )
