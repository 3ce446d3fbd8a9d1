"""Digests and throttling: a rule (or the user) may fold a user's events into one message per
window instead of one per event, and a rule may cap how many messages a user gets per period.

A rule's ``digest`` names its window: ``{"window": "10m"}`` (opened by the first event) or a
cadence ``{"cadence": "daily at 09:00"}`` (``hourly``, ``daily at HH:MM``,
``weekly on monday at HH:MM``, read in the user's time zone). ``key`` groups the events (by
default the event type; ``data.<path>`` groups by a value of the data, always per user) and
``maxItems`` closes a window early. A user's own choice per event type (or for ``all``) —
``instant | hourly | daily | weekly | off`` — overrides the rule; a critical rule never digests.

Open windows are ``digest_buckets`` rows and their events ``digest_items`` rows, written in
the event's own transaction, so a restart loses nothing; :mod:`shared.events.digest_close`
closes them when due. One open bucket per rule and key (a partial unique index): an event
that arrives while its bucket closes either joins it before the close locks it or opens the
next one after, never both and never neither.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import and_, case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.channels import Status
from shared.db.models import (
    OPEN_BUCKET,
    DigestBucket,
    DigestItem,
    EventLog,
    NotificationLog,
    NotificationRule,
    UserNotificationPreference,
)

#: The shortest and longest window or throttle period (seconds units are for tests and demos).
MIN_PERIOD = timedelta(seconds=1)
MAX_PERIOD = timedelta(days=30)
#: The most events one digest may collect before it closes on its own.
MAX_ITEMS_LIMIT = 1_000
#: The most messages a throttle may allow per period.
MAX_THROTTLE_LIMIT = 10_000
#: What a user may choose per event type.
USER_CHOICES = ("instant", "hourly", "daily", "weekly", "off")
#: The cadence each user choice stands for.
USER_CADENCES = {"hourly": "hourly", "daily": "daily at 09:00", "weekly": "weekly on monday at 09:00"}
#: ``digest_buckets.state`` values.
OPEN, CLOSED, FAILED = "open", "closed", "failed"

_DURATION = re.compile(r"^([1-9]\d{0,6})(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CADENCE = re.compile(
    r"^(?:(?P<hourly>hourly)|daily at (?P<daily>\d\d:\d\d)"
    r"|weekly on (?P<day>[a-z]+) at (?P<weekly>\d\d:\d\d))$"
)


def parse_duration(raw: str) -> timedelta:
    """``"2s"``, ``"10m"``, ``"1h"``, ``"7d"``; ValueError otherwise or out of bounds."""
    match = _DURATION.match(raw.strip())
    if match is None:
        raise ValueError(f"{raw!r} is not a duration such as 30s, 10m, 1h or 1d")
    period = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if not MIN_PERIOD <= period <= MAX_PERIOD:
        raise ValueError(f"{raw!r} is outside 1s..30d")
    return period


def _clock(raw: str) -> time:
    try:
        return time.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a time of day HH:MM") from None


def check_cadence(raw: str) -> str:
    match = _CADENCE.match(raw.strip().lower())
    if match is None:
        raise ValueError(f"{raw!r} is not a cadence: hourly, daily at HH:MM or weekly on <day> at HH:MM")
    if match["daily"]:
        _clock(match["daily"])
    if match["weekly"]:
        _clock(match["weekly"])
        if match["day"] not in _DAYS:
            raise ValueError(f"{match['day']!r} is not a day of the week")
    return raw.strip().lower()


def next_close(cadence: str, now: datetime, zone: str) -> datetime:
    """When a window on ``cadence`` that is open at ``now`` closes (UTC), in ``zone``'s clock."""
    match = _CADENCE.match(cadence)
    if match is None:
        raise ValueError(f"not a cadence: {cadence!r}")
    local = now.astimezone(ZoneInfo(zone))
    if match["hourly"]:
        return (local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).astimezone(now.tzinfo)
    at = _clock(match["daily"] or match["weekly"])
    candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    step = timedelta(days=1)
    if match["weekly"]:
        candidate += timedelta(days=(_DAYS.index(match["day"]) - local.weekday()) % 7)
        step = timedelta(days=7)
    if candidate <= local:
        candidate += step
    return candidate.astimezone(now.tzinfo)


class DigestInput(BaseModel):
    """A rule's digest: a ``window`` or a ``cadence`` (exactly one), ``key``, ``maxItems``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    window: str | None = Field(default=None, description="Opened by the first event: 30s, 10m, 1h, 1d")
    cadence: str | None = Field(
        default=None, description="hourly, daily at HH:MM or weekly on <day> at HH:MM (user's time zone)"
    )
    key: str = Field(
        default="eventType",
        max_length=200,
        description="What groups a user's events: eventType (default) or a data path such as data.orderId",
    )
    max_items: int | None = Field(
        default=None, ge=1, le=MAX_ITEMS_LIMIT, description="Close the digest once it holds this many events"
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: str | None) -> str | None:
        return check_cadence(value) if value is not None else None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if value != "eventType" and not re.fullmatch(r"data(\.[A-Za-z0-9_-]+)+", value):
            raise ValueError("key is eventType or a data path such as data.orderId")
        return value

    @model_validator(mode="after")
    def _one_window(self) -> DigestInput:
        if (self.window is None) == (self.cadence is None):
            raise ValueError("a digest has either a window (e.g. 10m) or a cadence (e.g. daily at 09:00)")
        return self


class ThrottleInput(BaseModel):
    """At most ``limit`` messages per user and event type every ``per``; the rest ``then``
    wait for a digest or are skipped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    limit: int = Field(ge=1, le=MAX_THROTTLE_LIMIT)
    per: str = Field(description="The period: 30s, 10m, 1h, 1d")
    then: Literal["digest", "skip"] = "skip"

    @field_validator("per")
    @classmethod
    def _per(cls, value: str) -> str:
        parse_duration(value)
        return value


def check_user_choices(value: dict[str, str]) -> dict[str, str]:
    for event_type, choice in value.items():
        if choice not in USER_CHOICES:
            raise ValueError(f"digest choice for {event_type!r} must be one of {', '.join(USER_CHOICES)}")
    return value


def user_choices(session: Session, user_id: str | None) -> tuple[dict[str, Any], str]:
    """The user's digest choices and time zone (none and UTC without preferences)."""
    row = session.get(UserNotificationPreference, user_id) if user_id else None
    if row is None:
        return {}, "UTC"
    return dict(row.digest_preferences or {}), row.timezone or "UTC"


@dataclass(frozen=True)
class Instant:
    """Send each event at once (the pipeline as before)."""


@dataclass(frozen=True)
class Digest:
    spec: DigestInput


@dataclass(frozen=True)
class Skip:
    reason: str
    code: str


Plan = Instant | Digest | Skip


def plan(
    session: Session, rule: NotificationRule, event: EventLog, choices: dict[str, Any], now: datetime
) -> Plan:
    """How ``event`` reaches its user under ``rule``, given the user's digest ``choices``."""
    if rule.critical:
        return Instant()
    rule_digest = DigestInput.model_validate(rule.digest) if rule.digest else None
    choice = user_choice(choices, event.event_type)
    if choice == "off":
        return turned_off(event.event_type)
    if choice in USER_CADENCES:
        base = rule_digest.model_dump() if rule_digest else {}
        return Digest(DigestInput.model_validate({**base, "window": None, "cadence": USER_CADENCES[choice]}))
    if choice != "instant" and rule_digest is not None:
        return Digest(rule_digest)
    if rule.throttle and event.user_id:
        throttle = ThrottleInput.model_validate(rule.throttle)
        _count_alone(session, event)
        if _sent_recently(session, event, parse_duration(throttle.per), now) >= throttle.limit:
            if throttle.then == "digest":
                return Digest(DigestInput(window=throttle.per))
            return Skip(f"throttled: at most {throttle.limit} per {throttle.per}", "throttled")
    return Instant()


def user_choice(choices: dict[str, Any], event_type: str) -> str | None:
    """The user's choice for ``event_type``: its own, else the one for ``all``."""
    choice = choices.get(event_type) or choices.get("all")
    return str(choice) if choice is not None else None


def turned_off(event_type: str) -> Skip:
    return Skip(f"the user turned off {event_type} notifications", "digest_off")


def off_at_close(choices: dict[str, Any], event_type: str) -> Skip | None:
    """A digest closing for a user who has meanwhile turned its type (or everything) off is
    skipped with that reason; any other choice made meanwhile leaves it to be sent."""
    return turned_off(event_type) if user_choice(choices, event_type) == "off" else None


def _count_alone(session: Session, event: EventLog) -> None:
    """Serialise the throttled events of one user and type until this transaction ends, so two
    workers cannot both see the count under the limit and both send (PostgreSQL; SQLite
    already runs one writing transaction at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        key = f"throttle:{event.user_id}:{event.event_type}"
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


def _sent_recently(session: Session, event: EventLog, period: timedelta, now: datetime) -> int:
    """Messages the user got (or will) for this event type in the last ``period``, counted
    once per event however many channels it went on (a digest counts as its last event)."""
    query = select(func.count(func.distinct(NotificationLog.event_id))).where(
        NotificationLog.user_id == event.user_id,
        NotificationLog.event_type == event.event_type,
        NotificationLog.created_at >= now - period,
        NotificationLog.status.notin_((Status.SKIPPED.value, Status.FAILED.value)),
    )
    return int(session.scalar(query) or 0)


def item_view(event_id: str, occurred_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """One event as a digest's template sees it in ``events``, ``first`` and ``last``."""
    return {"eventId": event_id, "occurredAt": occurred_at.isoformat(), "data": data}


def single(event: EventLog) -> dict[str, Any]:
    """The digest fields of a digest holding only ``event``."""
    one = item_view(event.id, event.created_at, dict(event.data or {}))
    return {"events": [one], "count": 1, "first": one, "last": one}


def digest_key(spec: DigestInput, event: EventLog) -> str:
    """The bucket key: always the user's, then the event type or the data path's value."""
    if spec.key == "eventType":
        group = event.event_type
    else:
        value: Any = event.data or {}
        for part in spec.key.split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        group = f"{spec.key}={value}"
    return f"{event.user_id or ''}\x1f{group}"[:512]


def closes_at(spec: DigestInput, now: datetime, zone: str) -> datetime:
    if spec.window is not None:
        return now + parse_duration(spec.window)
    return next_close(str(spec.cadence), now, zone)


def add(
    session: Session, rule: NotificationRule, event: EventLog, spec: DigestInput, zone: str, now: datetime
) -> str:
    """Put ``event`` in the rule's open bucket for its key (opening one if none is); returns
    the bucket id. The upsert locks the bucket row until this transaction ends, so a close
    that comes meanwhile skips it and takes it, with this event, on its next pass."""
    full = spec.max_items is not None and spec.max_items <= 1
    values = {
        "id": str(uuid.uuid4()),
        "rule_id": rule.id,
        "user_id": event.user_id,
        "event_type": event.event_type,
        "digest_key": digest_key(spec, event),
        "state": OPEN,
        "closes_at": now if full else closes_at(spec, now, zone),
        "item_count": 1,
        "max_items": spec.max_items,
        "created_at": now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = DigestBucket.__table__
    insert = dialect.insert(table).values(**values)
    existing = table.c
    reached = and_(existing.max_items.is_not(None), existing.item_count + 1 >= existing.max_items)

    upsert = insert.on_conflict_do_update(
        index_elements=[existing.rule_id, existing.digest_key],
        # Written as the index declares it: as a bound parameter, the predicate of a
        # statement psycopg has prepared on the server (after its fifth run on a connection)
        # no longer proves that the partial index applies, and PostgreSQL refuses the upsert.
        index_where=text(OPEN_BUCKET),
        set_={
            "item_count": existing.item_count + 1,
            "closes_at": case((reached, now), else_=existing.closes_at),
        },
    ).returning(existing.id)
    bucket_id = str(session.execute(upsert).scalar_one())
    session.add(
        DigestItem(
            id=str(uuid.uuid4()),
            bucket_id=bucket_id,
            event_id=event.id,
            user_id=event.user_id,
            data=dict(event.data or {}),
            occurred_at=event.created_at,
        )
    )
    session.flush()
    return bucket_id


def holding(session: Session, event_id: str) -> list[dict[str, Any]]:
    """The digests ``event_id`` was folded into (one, unless rules digest it separately):
    where it stands, and the message it becomes once closed (the digest's last event links it)."""
    query = (
        select(DigestBucket)
        .join(DigestItem, DigestItem.bucket_id == DigestBucket.id)
        .where(DigestItem.event_id == event_id)
        .order_by(DigestBucket.created_at)
    )
    return [
        {
            "id": bucket.id,
            "ruleId": bucket.rule_id,
            "state": bucket.state,
            "count": bucket.item_count,
            "closesAt": bucket.closes_at.isoformat(),
            "closedAt": bucket.closed_at.isoformat() if bucket.closed_at else None,
            "error": bucket.error,
        }
        for bucket in session.scalars(query)
    ]
