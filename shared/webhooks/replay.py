"""Replaying webhook messages: one delivery on demand, or every failure of an endpoint
since a moment (recovery after an outage on the receiver's side).

A replay gives the same message one more attempt: same ``webhook-id`` (receivers that did
get it after all drop the duplicate), same body, signed with the endpoint's current
secret. The functions change rows in the caller's session; the caller publishes the
returned ids after commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import tracking
from shared.channels import TERMINAL_STATUSES, Channel, Status
from shared.db.models import NotificationLog, WebhookDeliveryLog
from shared.errors import KaiError, NotFound

#: Most messages one recovery request replays; ask again with a later ``since`` for more.
RECOVER_LIMIT = 1000


class ReplayRefused(KaiError):
    """The message cannot be replayed now (it is still on its way)."""


def replay(session: Session, message_id: str) -> str:
    """Queue one more attempt of a finished webhook message."""
    row = session.get(NotificationLog, message_id, with_for_update=True)
    if row is None or row.channel != Channel.WEBHOOK.value:
        raise NotFound(f"no webhook delivery {message_id}")
    if not Status(row.status).is_terminal:
        raise ReplayRefused(f"delivery {message_id} is still {row.status}; replay it once it has finished")
    tracking.reopen(session, message_id, extra_attempts=1, from_statuses=TERMINAL_STATUSES)
    return message_id


def failed_since(session: Session, endpoint_id: str, since: datetime) -> list[str]:
    """Messages to the endpoint that failed for good and were attempted since ``since``."""
    attempted = (
        select(WebhookDeliveryLog.notification_log_id)
        .where(WebhookDeliveryLog.configuration_id == endpoint_id, WebhookDeliveryLog.created_at >= since)
        .distinct()
    )
    query = (
        select(NotificationLog.id)
        .where(NotificationLog.id.in_(attempted), NotificationLog.status == Status.FAILED.value)
        .order_by(NotificationLog.created_at)
        .limit(RECOVER_LIMIT)
    )
    return list(session.scalars(query))


def recover(session: Session, endpoint_id: str, since: datetime) -> list[str]:
    """Replay every message to the endpoint that failed since ``since``, oldest first."""
    return [replay(session, message_id) for message_id in failed_since(session, endpoint_id, since)]
