"""Delivery tracking: every state change of a message's ``notification_logs`` row.

The row is the truth about a message; the broker only carries its id. A worker *claims* a
row before sending (an atomic UPDATE that also returns the payload), so a redelivered or
duplicated broker message finds the row already ``sent`` and is acknowledged without a
second send. A claim is a lease: if the worker dies, the lease runs out and the next copy
of the message may claim it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import metrics
from shared.channels import Channel, Status
from shared.db.models import NotificationLog, utcnow
from shared.payloads import Stored

#: Longest error text we keep per message; provider bodies can be large.
MAX_ERROR_CHARS = 2000


def new_message_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class NewMessage:
    channel: Channel
    recipient: str
    payload: Stored
    max_attempts: int
    user_id: str | None = None
    event_type: str | None = None
    event_id: str | None = None
    idempotency_key: str | None = None
    template_key: str | None = None
    template_version: int | None = None
    #: Hold the message until then (scheduled sends, quiet hours); None publishes now.
    due_at: datetime | None = None


def create(session: Session, message: NewMessage) -> tuple[str, bool]:
    """Insert the row for a new message. Returns ``(id, created)``; with an idempotency key
    already used, returns the first message's id and ``created=False``."""
    if message.idempotency_key is not None:
        existing = session.scalar(
            select(NotificationLog.id).where(NotificationLog.idempotency_key == message.idempotency_key)
        )
        if existing is not None:
            return existing, False
    now = utcnow()
    row = NotificationLog(
        id=new_message_id(),
        channel=message.channel.value,
        status=Status.QUEUED.value,
        recipient=message.recipient,
        user_id=message.user_id,
        event_type=message.event_type,
        event_id=message.event_id,
        template_key=message.template_key,
        template_version=message.template_version,
        idempotency_key=message.idempotency_key,
        payload=message.payload.to_json(),
        attempts=0,
        max_attempts=message.max_attempts,
        next_attempt_at=message.due_at or now,
        due_at=message.due_at,
        created_at=now,
        updated_at=now,
    )
    if message.idempotency_key is None:
        session.add(row)
        session.flush()
        metrics.ENQUEUED.labels(message.channel.value).inc()
        return row.id, True
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # A concurrent request with the same key won the insert.
        winner = session.scalar(
            select(NotificationLog.id).where(NotificationLog.idempotency_key == message.idempotency_key)
        )
        if winner is None:
            raise
        return winner, False
    metrics.ENQUEUED.labels(message.channel.value).inc()
    return row.id, True


def discard(session: Session, message_id: str) -> None:
    """Remove a message the broker never confirmed: the caller was told it was not accepted."""
    session.execute(delete(NotificationLog).where(NotificationLog.id == message_id))


@dataclass(frozen=True)
class Claimed:
    """One attempt of a message, taken by a worker. ``payload`` is the row's JSON as stored;
    the pipeline reads it once into its typed form (:func:`shared.payloads.load`)."""

    id: str
    channel: Channel
    recipient: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    user_id: str | None
    event_type: str | None


@dataclass(frozen=True)
class AlreadyFinal:
    status: Status


@dataclass(frozen=True)
class Busy:
    """Another worker holds a live claim until ``until``."""

    until: datetime


@dataclass(frozen=True)
class Missing:
    pass


ClaimResult = Claimed | AlreadyFinal | Busy | Missing


def claim(session: Session, message_id: str, lease: timedelta) -> ClaimResult:
    """Take the message for one attempt, or say why not."""
    now = utcnow()
    row = session.execute(
        update(NotificationLog)
        .where(
            NotificationLog.id == message_id,
            or_(
                NotificationLog.status == Status.QUEUED.value,
                and_(
                    NotificationLog.status == Status.PROCESSING.value,
                    or_(NotificationLog.locked_until.is_(None), NotificationLog.locked_until < now),
                ),
            ),
        )
        .values(
            status=Status.PROCESSING.value,
            attempts=NotificationLog.attempts + 1,
            locked_until=now + lease,
            due_at=None,
            updated_at=now,
        )
        .returning(
            NotificationLog.id,
            NotificationLog.channel,
            NotificationLog.recipient,
            NotificationLog.payload,
            NotificationLog.attempts,
            NotificationLog.max_attempts,
            NotificationLog.user_id,
            NotificationLog.event_type,
        )
    ).one_or_none()
    if row is not None:
        metrics.ATTEMPTS.labels(row.channel).inc()
        return Claimed(
            id=row.id,
            channel=Channel(row.channel),
            recipient=row.recipient,
            payload=row.payload,
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            user_id=row.user_id,
            event_type=row.event_type,
        )
    current = session.execute(
        select(NotificationLog.status, NotificationLog.locked_until).where(NotificationLog.id == message_id)
    ).one_or_none()
    if current is None:
        return Missing()
    status = Status(current.status)
    if status.is_terminal:
        return AlreadyFinal(status)
    return Busy(until=current.locked_until or now)


def _finish(session: Session, message_id: str, attempt: int, values: dict[str, Any]) -> bool:
    """Apply a result, but only for the attempt that holds the claim (a late, superseded
    attempt must not overwrite a newer outcome)."""
    now = utcnow()
    row = session.execute(
        update(NotificationLog)
        .where(
            NotificationLog.id == message_id,
            NotificationLog.status == Status.PROCESSING.value,
            NotificationLog.attempts == attempt,
        )
        .values(updated_at=now, locked_until=None, **values)
        .returning(NotificationLog.channel, NotificationLog.created_at)
    ).one_or_none()
    if row is None:
        return False
    status = Status(values["status"])
    reason = values.get("error_code") or "ok"
    if status.is_terminal:
        metrics.COMPLETED.labels(row.channel, status.value, reason).inc()
        metrics.DELIVERY_LATENCY.labels(row.channel, status.value).observe(
            (now - row.created_at).total_seconds()
        )
    else:
        metrics.RETRIES.labels(row.channel, reason).inc()
    return True


def mark_sent(
    session: Session,
    message_id: str,
    attempt: int,
    *,
    provider_message_id: str | None,
    delivered: bool,
) -> bool:
    now = utcnow()
    values: dict[str, Any] = {
        "status": (Status.DELIVERED if delivered else Status.SENT).value,
        "provider_message_id": provider_message_id,
        "sent_at": now,
        "completed_at": now,
        "next_attempt_at": None,
        "last_error": None,
        "error_code": None,
    }
    if delivered:
        values["delivered_at"] = now
    return _finish(session, message_id, attempt, values)


def mark_failed(session: Session, message_id: str, attempt: int, *, error: str, code: str) -> bool:
    return _finish(
        session,
        message_id,
        attempt,
        {
            "status": Status.FAILED.value,
            "last_error": error[:MAX_ERROR_CHARS],
            "error_code": code,
            "completed_at": utcnow(),
            "next_attempt_at": None,
        },
    )


def mark_skipped(session: Session, message_id: str, attempt: int, *, reason: str, code: str) -> bool:
    return _finish(
        session,
        message_id,
        attempt,
        {
            "status": Status.SKIPPED.value,
            "last_error": reason[:MAX_ERROR_CHARS],
            "error_code": code,
            "completed_at": utcnow(),
            "next_attempt_at": None,
        },
    )


def mark_retry(
    session: Session, message_id: str, attempt: int, *, error: str, code: str, at: datetime, park: bool
) -> bool:
    """Back to ``queued`` until ``at``. ``park`` hands the message to the scheduler (long
    delays); otherwise the broker's delay queue holds it."""
    return _finish(
        session,
        message_id,
        attempt,
        {
            "status": Status.QUEUED.value,
            "last_error": error[:MAX_ERROR_CHARS],
            "error_code": code,
            "next_attempt_at": at,
            "due_at": at if park else None,
        },
    )


def defer(session: Session, message_id: str, attempt: int, *, until: datetime, reason: str) -> bool:
    """Hold a claimed message until ``until`` without counting an attempt (quiet hours): it
    is parked for the scheduler like a long retry delay."""
    return _finish(
        session,
        message_id,
        attempt,
        {
            "status": Status.QUEUED.value,
            "attempts": NotificationLog.attempts - 1,
            "last_error": f"delayed: {reason}",
            "error_code": "deferred",
            "next_attempt_at": until,
            "due_at": until,
        },
    )


def close_unsendable(session: Session, message_id: str, *, status: Status, reason: str, code: str) -> bool:
    """End a message that was never attempted because it cannot be sent (a rule's message
    with no address or no template): ``skipped`` or ``failed`` straight from ``queued``."""
    if not status.is_terminal:
        raise ValueError(f"{status.value} does not end a message")
    now = utcnow()
    row = session.execute(
        update(NotificationLog)
        .where(NotificationLog.id == message_id, NotificationLog.status == Status.QUEUED.value)
        .values(
            status=status.value,
            last_error=reason[:MAX_ERROR_CHARS],
            error_code=code,
            completed_at=now,
            next_attempt_at=None,
            due_at=None,
            updated_at=now,
        )
        .returning(NotificationLog.channel)
    ).one_or_none()
    if row is None:
        return False
    metrics.COMPLETED.labels(row.channel, status.value, code).inc()
    return True


def reopen(
    session: Session, message_id: str, *, extra_attempts: int, from_statuses: frozenset[Status]
) -> bool:
    """Give a finished message ``extra_attempts`` more attempts (a replay, a dead letter sent
    again): back to ``queued``, due now. Only from one of ``from_statuses``; False otherwise.
    The caller publishes the id after commit."""
    if not from_statuses or not all(s.is_terminal for s in from_statuses):
        raise ValueError("only a finished message can be reopened")
    now = utcnow()
    row = session.execute(
        update(NotificationLog)
        .where(
            NotificationLog.id == message_id,
            NotificationLog.status.in_([s.value for s in from_statuses]),
        )
        .values(
            status=Status.QUEUED.value,
            max_attempts=NotificationLog.attempts + extra_attempts,
            next_attempt_at=now,
            due_at=None,
            locked_until=None,
            completed_at=None,
            updated_at=now,
        )
        .returning(NotificationLog.channel)
    ).one_or_none()
    return row is not None


def hold(session: Session, message_id: str, *, until: datetime, planned: datetime) -> bool:
    """Park a queued message for the scheduler until ``until`` without an attempt (a webhook
    waiting behind an earlier one with its ordering key); ``planned`` is when it is expected
    to go, as shown in its status."""
    row = session.execute(
        update(NotificationLog)
        .where(NotificationLog.id == message_id, NotificationLog.status == Status.QUEUED.value)
        .values(due_at=until, next_attempt_at=planned, updated_at=utcnow())
        .returning(NotificationLog.id)
    ).one_or_none()
    return row is not None


def get(session: Session, message_id: str) -> NotificationLog | None:
    return session.get(NotificationLog, message_id)


def take_due(
    session: Session, *, channels: list[Channel], limit: int, stale_after: timedelta
) -> list[tuple[str, Channel]]:
    """Messages the scheduler must publish now: parked ones whose time has come, and ones the
    broker has evidently lost (queued or claimed long past their planned time, e.g. a crash
    between the row insert and the publish). Marks them as handed back to the broker."""
    now = utcnow()
    stale = now - stale_after
    names = [c.value for c in channels]
    due_clause = and_(NotificationLog.due_at.is_not(None), NotificationLog.due_at <= now)
    lost_clause = or_(
        and_(
            NotificationLog.status == Status.QUEUED.value,
            NotificationLog.due_at.is_(None),
            NotificationLog.next_attempt_at < stale,
        ),
        and_(
            NotificationLog.status == Status.PROCESSING.value,
            NotificationLog.locked_until < stale,
        ),
    )
    picked: list[tuple[str, Channel]] = []
    for clause in (due_clause, lost_clause):
        query = (
            select(NotificationLog.id, NotificationLog.channel)
            .where(NotificationLog.channel.in_(names), clause)
            .order_by(NotificationLog.next_attempt_at)
            .limit(limit - len(picked))
            .with_for_update(skip_locked=True)
        )
        rows = session.execute(query).all()
        if rows:
            ids = [r.id for r in rows]
            session.execute(
                update(NotificationLog)
                .where(NotificationLog.id.in_(ids))
                .values(due_at=None, next_attempt_at=now, locked_until=now, updated_at=now)
            )
            picked.extend((r.id, Channel(r.channel)) for r in rows)
        if len(picked) >= limit:
            break
    return picked
