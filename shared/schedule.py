"""Scheduled sends: what a caller may give as a send time, and the instant it stands for.

A send takes ``sendAt`` (an RFC 3339 time with its offset, or ``{"localTime": "09:00"}``:
the next 09:00 on the recipient's clock) or ``delayMs``, never both. :func:`resolve` turns
either into the UTC instant the message is due, held to a window: no earlier than
:data:`PAST_GRACE` ago (a clock a little behind ours should not fail a send) and no later
than ``SCHEDULE_MAX_AHEAD``. Looking up the recipient's zone is the producer's business;
this module only computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: A send time this far in the past still goes (at once): the sender's clock may lag ours.
PAST_GRACE = timedelta(minutes=1)
#: The zone of a local send time when the user has none on record (or no user is named).
DEFAULT_ZONE = "UTC"
#: ``HH:MM`` on a 24-hour clock.
LOCAL_TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"

#: RFC 3339 ``date-time``: a full date, a time with seconds, and an offset (``Z`` or ±HH:MM).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


class LocalTime(BaseModel):
    """The next time the recipient's clock shows ``localTime`` (``HH:MM``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    local_time: str = Field(pattern=LOCAL_TIME_PATTERN, description="HH:MM on the recipient's clock.")


def _rfc3339(value: Any) -> Any:
    """A string must be RFC 3339 with its offset: pydantic alone would also take a bare date,
    a number of seconds, or a time without its zone."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("sendAt must be an RFC 3339 time with its offset, e.g. 2026-12-24T09:00:00+01:00")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("sendAt must be an RFC 3339 time with its offset, not a number")
    return value


#: What ``sendAt`` may be.
SendAt = Annotated[AwareDatetime | LocalTime, BeforeValidator(_rfc3339)]


@dataclass(frozen=True, slots=True)
class Due:
    """When a message is to go: ``at`` (UTC), and ``zone`` if a local time was read in one."""

    at: datetime
    zone: str | None = None


class OutOfWindow(ValueError):
    """A send time before the grace or past the horizon; the message says which, ``field``
    names the one given (``sendAt`` or ``delayMs``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def next_local(clock: str, zone: str, now: datetime) -> datetime:
    """The first instant after ``now`` at which ``zone``'s clock shows ``clock`` (UTC). A time
    the clock skips (a DST gap) moves forward by the gap, as ``java.time`` does (02:30 on a
    night that jumps from 02:00 to 03:00 is 03:30); a time the clock shows twice is the first."""
    tz = ZoneInfo(zone)
    wanted = time.fromisoformat(clock)
    local_now = now.astimezone(tz)
    for days in range(3):
        day = local_now.date() + timedelta(days=days)
        candidate = datetime.combine(day, wanted, tzinfo=tz).astimezone(UTC)
        if candidate > now:
            return candidate
    raise AssertionError("a clock time recurs within three days")  # pragma: no cover


def resolve(
    send_at: datetime | LocalTime | None,
    delay_ms: int | None,
    *,
    zone: str | None,
    now: datetime,
    max_ahead: timedelta,
) -> Due | None:
    """The instant a send is due, or None for at once. ``zone`` is the recipient's, used only
    for a :class:`LocalTime`. Raises :class:`OutOfWindow` (naming the field) outside the
    window."""
    if send_at is None and delay_ms is None:
        return None
    used: str | None = None
    if isinstance(send_at, LocalTime):
        used = zone or DEFAULT_ZONE
        at, field = next_local(send_at.local_time, used, now), "sendAt"
    elif send_at is not None:
        at, field = send_at.astimezone(UTC), "sendAt"
    else:
        at, field = now + timedelta(milliseconds=delay_ms or 0), "delayMs"
    if at < now - PAST_GRACE:
        raise OutOfWindow(field, f"{field} is in the past ({at.isoformat()}); give a time from now on")
    if at > now + max_ahead:
        raise OutOfWindow(
            field, f"{field} is more than {_days(max_ahead)} ahead (SCHEDULE_MAX_AHEAD); give an earlier time"
        )
    return Due(at, used)


def _days(span: timedelta) -> str:
    if span % timedelta(days=1):
        return f"{span.total_seconds():g} s"
    return f"{span.days} days"
