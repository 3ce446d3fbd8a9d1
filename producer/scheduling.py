"""Scheduled sends on the producer's side: when a request is due, and changing one's mind.

A send with ``sendAt``/``delayMs`` is stored ``scheduled`` with its due time and not
published; the scheduler of a worker publishes it when due (:mod:`workers.scheduler`). A
local send time (``{"localTime": "09:00"}``) is read in the zone of the user's preferences,
else in :data:`~shared.schedule.DEFAULT_ZONE`. Cancel and reschedule are single conditional
UPDATEs (:func:`shared.tracking.cancel`, :func:`shared.tracking.reschedule`), so a race with
the scheduler ends in exactly one outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from producer import message_log
from shared import preferences, schedule, tracking
from shared.config import Settings
from shared.db.models import NotificationLog, utcnow
from shared.db.rls import scope_for
from shared.errors import NotCancelable, NotFound, NotScheduled, ValidationError
from shared.messages import _Request
from shared.schedule import Due, LocalTime, SendAt


def due_of(settings: Settings, request: _Request, *, now: datetime | None = None) -> Due | None:
    """When ``request`` is due (None: at once); :class:`ValidationError` outside the window.
    A local send time reads the user's zone from the database."""
    if request.send_at is None and request.delay_ms is None:
        return None
    zone = None
    if isinstance(request.send_at, LocalTime) and request.user_id is not None:
        with scope_for(settings.database_url, request.user_id) as session:
            zone = preferences.load(session, request.user_id).timezone
    return _resolve(settings, request.send_at, request.delay_ms, zone, now or utcnow())


def needs_database(fields: dict[str, Any]) -> bool:
    """Whether resolving the send time of these (unvalidated) fields reads the database: a
    local send time looks up the user's zone."""
    return isinstance(fields.get("send_at", fields.get("sendAt")), dict | LocalTime)


def _resolve(
    settings: Settings,
    send_at: datetime | LocalTime | None,
    delay_ms: int | None,
    zone: str | None,
    now: datetime,
) -> Due | None:
    try:
        return schedule.resolve(
            send_at,
            delay_ms,
            zone=zone,
            now=now,
            max_ahead=timedelta(milliseconds=settings.schedule_max_ahead_ms),
        )
    except schedule.OutOfWindow as exc:
        raise ValidationError(str(exc), [{"field": exc.field, "message": str(exc)}]) from None


class NewSendTime(BaseModel):
    """The body of a reschedule: ``sendAt`` or ``delayMs``, exactly one."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    send_at: SendAt | None = None
    delay_ms: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> NewSendTime:
        if (self.send_at is None) == (self.delay_ms is None):
            raise ValueError("give sendAt or delayMs (one of them)")
        return self


def cancel(settings: Settings, message_id: str, *, for_user: str | None) -> dict[str, Any]:
    """Cancel a message that has not started; its status afterwards, read in the same
    transaction. :class:`NotFound`, or :class:`NotCancelable` once a worker has taken it (or
    it has finished)."""
    with scope_for(settings.database_url, for_user) as session:
        canceled = tracking.cancel(session, message_id, for_user=for_user)
        row = _found(session, message_id, for_user)
        if canceled:
            return message_log.view(row)
    message = f"message {message_id} is {row.status}; only a message that has not started can be canceled"
    raise NotCancelable(message, [{"field": "status", "message": message}])


def reschedule(
    settings: Settings, message_id: str, wanted: NewSendTime, *, for_user: str | None
) -> dict[str, Any]:
    """Give a scheduled message another send time; its status afterwards, read in the same
    transaction. :class:`ValidationError` for a time outside the window, :class:`NotFound`,
    or :class:`NotScheduled` once the scheduler has published it."""
    with scope_for(settings.database_url, for_user) as session:
        row = _found(session, message_id, for_user)
        zone = None
        if isinstance(wanted.send_at, LocalTime) and row.user_id is not None:
            zone = preferences.load(session, row.user_id).timezone
        now = utcnow()
        due = _resolve(settings, wanted.send_at, wanted.delay_ms, zone, now)
        at, used = (due.at, due.zone) if due is not None else (now, None)
        moved = tracking.reschedule(session, message_id, at, used, for_user=for_user)
        session.refresh(row)  # where it stands now, not before the UPDATE
        if moved:
            return message_log.view(row)
        status = row.status
    message = f"message {message_id} is {status}; only a scheduled message can be rescheduled"
    raise NotScheduled(message, [{"field": "status", "message": message}])


def _found(session: Session, message_id: str, for_user: str | None) -> NotificationLog:
    row = message_log.get(session, message_id, for_user=for_user)
    if row is None:
        raise NotFound(f"no message with id {message_id}")
    return row
