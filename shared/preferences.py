"""A user's notification preferences, and the decision they make for one message.

Defaults (a user without a row): every channel on, no quiet hours, UTC. Precedence, most
specific first: a critical message (set on its event rule, e.g. security alerts) ignores
every preference; else an explicit per event type and channel choice wins; else the
channel's global switch. Quiet hours hold non-critical email and SMS until the window ends
(they are delayed, never dropped); in-app and webhooks are not noisy and go at once.

Workers decide at send time (the delivery pipeline's preferences stage), so a change made
after a message was enqueued still applies to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.orm import Session

from shared.channels import Channel
from shared.db.models import UserNotificationPreference, utcnow

#: Channels whose messages wait out quiet hours: those that buzz a phone or fill a mailbox.
QUIET_CHANNELS = frozenset({Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.CHAT})
#: Event types one user may set switches for (a bound on a per-user JSON document).
MAX_EVENT_PREFERENCES = 200
TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"
#: How often a user wants an event type's notifications (``all``: every type without its own
#: choice): one by one, folded into an hourly, daily (09:00) or weekly (Monday 09:00) digest in
#: the user's time zone, or not at all. Critical rules ignore it (shared/events/digests.py).
DigestChoice = Literal["instant", "hourly", "daily", "weekly", "off"]

_ENABLED_COLUMNS = {
    Channel.EMAIL: "email_enabled",
    Channel.SMS: "sms_enabled",
    Channel.IN_APP: "in_app_enabled",
    Channel.WEBHOOK: "webhook_enabled",
    Channel.PUSH: "push_enabled",
    Channel.CHAT: "chat_enabled",
}


@dataclass(frozen=True)
class Preferences:
    channels: dict[Channel, bool] = field(default_factory=lambda: dict.fromkeys(Channel, True))
    #: ``{"order.shipped": {"sms": False}}``
    events: dict[str, dict[str, bool]] = field(default_factory=dict)
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str = "UTC"
    #: ``{"all": "daily", "order.shipped": "instant"}``
    digest: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Allow:
    pass


@dataclass(frozen=True)
class Suppress:
    reason: str
    code: str


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str


Decision = Allow | Suppress | Defer


def _parse_time(raw: str | None) -> time | None:
    return time.fromisoformat(raw) if raw else None


def from_row(row: Any) -> Preferences:
    """From a ``user_notification_preferences`` row (ORM object or Core row); None: defaults."""
    if row is None:
        return Preferences()
    return Preferences(
        channels={channel: bool(getattr(row, column)) for channel, column in _ENABLED_COLUMNS.items()},
        events={str(k): dict(v) for k, v in (row.event_preferences or {}).items()},
        quiet_start=_parse_time(row.quiet_hours_start),
        quiet_end=_parse_time(row.quiet_hours_end),
        timezone=row.timezone or "UTC",
        digest={str(k): str(v) for k, v in (row.digest_preferences or {}).items()},
    )


def load(session: Session, user_id: str) -> Preferences:
    """The user's preferences (defaults without a row). ``session`` must act for the user."""
    return from_row(session.get(UserNotificationPreference, user_id))


_TABLE = cast(Table, UserNotificationPreference.__table__)
_MANY = select(_TABLE).where(_TABLE.c.user_id.in_(bindparam("users", expanding=True)))


def load_many(connection: Connection, user_ids: Iterable[str]) -> dict[str, Preferences]:
    """Several users' preferences in one query (defaults for those without a row); the
    transaction must act as the system."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    found = {row.user_id: from_row(row) for row in connection.execute(_MANY, {"users": list(wanted)})}
    return {user: found.get(user) or Preferences() for user in wanted}


def quiet_hours_end(prefs: Preferences, now: datetime) -> datetime | None:
    """When the quiet window containing ``now`` ends (UTC), or None outside quiet hours."""
    if prefs.quiet_start is None or prefs.quiet_end is None or prefs.quiet_start == prefs.quiet_end:
        return None
    zone = ZoneInfo(prefs.timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    start, end = prefs.quiet_start, prefs.quiet_end
    if start < end:
        inside = start <= clock < end
        end_day: date = local.date()
    else:  # the window spans midnight
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)


def decide(
    prefs: Preferences,
    channel: Channel,
    event_type: str | None,
    *,
    critical: bool,
    now: datetime | None = None,
) -> Decision:
    if critical:
        return Allow()
    explicit = prefs.events.get(event_type or "", {}).get(channel.value) if event_type else None
    if explicit is False:
        return Suppress(f"the user turned off {channel.value} for {event_type}", "preference_event_opt_out")
    if explicit is None and not prefs.channels.get(channel, True):
        return Suppress(f"the user turned off {channel.value} notifications", "preference_opt_out")
    if channel in QUIET_CHANNELS:
        until = quiet_hours_end(prefs, now or utcnow())
        if until is not None:
            return Defer(until, "quiet hours")
    return Allow()


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=TIME_PATTERN)
    end: str = Field(pattern=TIME_PATTERN)
    timezone: str | None = None


def _check_zone(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
    return value


class PreferencesInput(BaseModel):
    """A user's preferences document, as ``PUT /api/notifications/preferences`` takes it whole
    (a field left out takes its default, the default of a user who never set any) and
    ``PATCH`` merges into it. ``quietHours: null`` (or left out) means no quiet hours; a
    ``quietHours.timezone``, when given, is the user's ``timezone``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    email_enabled: bool = True
    sms_enabled: bool = True
    in_app_enabled: bool = True
    webhook_enabled: bool = True
    push_enabled: bool = True
    chat_enabled: bool = True
    #: ``{"order.shipped": {"sms": false}}``: per event type and channel, over the switches above.
    event_preferences: dict[str, dict[str, bool]] = Field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    timezone: str = "UTC"
    digest: dict[str, DigestChoice] = Field(
        default_factory=dict,
        description='Per event type (or "all"): instant, hourly, daily, weekly or off, e.g. '
        '{"all": "daily", "order.shipped": "instant"}',
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        _check_zone(value)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: QuietHours | None) -> QuietHours | None:
        if value is not None:
            _check_zone(value.timezone)
            if value.start == value.end:
                raise ValueError("quiet hours must start and end at different times")
        return value

    @field_validator("event_preferences")
    @classmethod
    def _events(cls, value: dict[str, dict[str, bool]]) -> dict[str, dict[str, bool]]:
        if len(value) > MAX_EVENT_PREFERENCES:
            raise ValueError(f"at most {MAX_EVENT_PREFERENCES} event types")
        cleaned: dict[str, dict[str, bool]] = {}
        for event_type, switches in value.items():
            if not event_type or len(event_type) > 255:
                raise ValueError("event types are 1 to 255 characters")
            cleaned[event_type] = {Channel.parse(name).value: on for name, on in switches.items()}
        return cleaned

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: dict[str, DigestChoice]) -> dict[str, DigestChoice]:
        if len(value) > MAX_EVENT_PREFERENCES:
            raise ValueError(f"at most {MAX_EVENT_PREFERENCES} event types")
        if any(not event_type or len(event_type) > 255 for event_type in value):
            raise ValueError("event types are 1 to 255 characters")
        return value


def replace(row: UserNotificationPreference, given: PreferencesInput) -> None:
    """Every preference of ``row`` from ``given``."""
    for column in _ENABLED_COLUMNS.values():
        setattr(row, column, getattr(given, column))
    row.event_preferences = given.event_preferences
    row.digest_preferences = dict(given.digest)
    quiet = given.quiet_hours
    row.quiet_hours_start = quiet.start if quiet else None
    row.quiet_hours_end = quiet.end if quiet else None
    row.timezone = quiet.timezone if quiet and quiet.timezone else given.timezone
    row.updated_at = utcnow()


def document(prefs: Preferences) -> dict[str, Any]:
    """The preferences as the :class:`PreferencesInput` that would save them (what a PATCH
    merges into)."""
    fields = view("", prefs)
    del fields["userId"]
    return fields


def view(user_id: str, prefs: Preferences) -> dict[str, Any]:
    quiet = (
        {"start": prefs.quiet_start.strftime("%H:%M"), "end": prefs.quiet_end.strftime("%H:%M")}
        if prefs.quiet_start and prefs.quiet_end
        else None
    )
    return {
        "userId": user_id,
        "emailEnabled": prefs.channels[Channel.EMAIL],
        "smsEnabled": prefs.channels[Channel.SMS],
        "inAppEnabled": prefs.channels[Channel.IN_APP],
        "webhookEnabled": prefs.channels[Channel.WEBHOOK],
        "pushEnabled": prefs.channels[Channel.PUSH],
        "chatEnabled": prefs.channels[Channel.CHAT],
        "eventPreferences": prefs.events,
        "quietHours": quiet,
        "timezone": prefs.timezone,
        "digest": prefs.digest,
    }
