"""The message log: what ``GET /api/messages`` and ``GET /api/messages/{id}`` show of
``notification_logs``.

The log is read newest first, by keyset on ``(created_at, id)`` (:mod:`shared.db.keyset`);
the filters people use most (none, a status, a user, a channel) each have an index ending
in those two columns (revision 0009), so a page reads only the rows it shows.

A read acting for a user names that user in its own WHERE clause. PostgreSQL's row-level
security would hide other users' rows anyway, but SQLite (the embedded default) has none:
there the query's filter is the only guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from shared.channels import Channel, Status
from shared.db import keyset
from shared.db.models import NotificationLog

#: Newest first; ``id`` breaks ties between messages created in the same microsecond.
NEWEST_FIRST = keyset.Keyset((NotificationLog.created_at, NotificationLog.id), descending=True)


@dataclass(frozen=True)
class LogFilter:
    """Which messages to list; every field given must match."""

    status: Status | None = None
    channel: Channel | None = None
    user_id: str | None = None
    event_type: str | None = None
    template_key: str | None = None
    #: Created at or after this time.
    created_from: datetime | None = None
    #: Created before this time (so consecutive windows never share a message).
    created_to: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        log = NotificationLog
        wanted: list[ColumnElement[bool]] = []
        for column, value in (
            (log.status, self.status),
            (log.channel, self.channel),
            (log.user_id, self.user_id),
            (log.event_type, self.event_type),
            (log.template_key, self.template_key),
        ):
            if value is not None:
                wanted.append(column == str(value))
        if self.created_from is not None:
            wanted.append(log.created_at >= self.created_from)
        if self.created_to is not None:
            wanted.append(log.created_at < self.created_to)
        return wanted


def _owned_by(for_user: str | None) -> list[ColumnElement[bool]]:
    return [] if for_user is None else [NotificationLog.user_id == for_user]


def get(session: Session, message_id: str, *, for_user: str | None) -> NotificationLog | None:
    """The message, or with ``for_user`` only if it is that user's."""
    query = select(NotificationLog).where(NotificationLog.id == message_id, *_owned_by(for_user))
    return session.scalars(query).one_or_none()


def page(
    session: Session,
    filters: LogFilter,
    after: keyset.Position | None,
    limit: int,
    *,
    for_user: str | None,
) -> tuple[list[NotificationLog], keyset.Position | None]:
    """Up to ``limit`` messages past ``after``, newest first, and the position to continue
    from (None on the last page); with ``for_user``, only that user's messages."""
    query = select(NotificationLog).where(*filters.conditions(), *_owned_by(for_user))
    return keyset.page(session, query, NEWEST_FIRST, after, limit)


def view(row: NotificationLog) -> dict[str, Any]:
    """A message as the HTTP API shows it (camelCase keys)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row.id,
        "channel": row.channel,
        "status": row.status,
        "recipient": row.recipient,
        "userId": row.user_id,
        "eventType": row.event_type,
        "eventId": row.event_id,
        "templateKey": row.template_key,
        "templateVersion": row.template_version,
        "ruleId": row.rule_id,
        "experimentId": row.experiment_id,
        "variant": row.variant,
        "attempts": row.attempts,
        "maxAttempts": row.max_attempts,
        "lastError": row.last_error,
        "errorCode": row.error_code,
        "providerMessageId": row.provider_message_id,
        "provider": row.provider,
        "idempotencyKey": row.idempotency_key,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "nextAttemptAt": iso(row.next_attempt_at) if row.status in ("queued", "scheduled") else None,
        "sendAt": iso(row.send_at),
        "timezone": row.send_at_zone,
        "sentAt": iso(row.sent_at),
        "deliveredAt": iso(row.delivered_at),
        "completedAt": iso(row.completed_at),
        "escalation": (
            {
                "of": row.escalation_of,
                "after": row.escalation_after or row.escalation_of,
                "if": row.escalation_if,
            }
            if row.escalation_of is not None
            else None
        ),
        **({"transactional": True} if _transactional(row) else {}),
    }


def _transactional(row: NotificationLog) -> bool:
    return isinstance(row.payload, dict) and row.payload.get("transactional") is True
