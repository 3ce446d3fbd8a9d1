"""Per-key ordering for endpoints that ask for it (``ordered``).

Messages to an ordered endpoint whose events carry the same ``orderingKey`` (a field of the
event's data) arrive one at a time, in the order they were created: a message waits while an
earlier one with the same key is still on its way (queued, retrying or being sent). Other
keys, and messages without a key, go in parallel. A message that failed for good no longer
holds the next one back, as with any ordered delivery that must not stall forever.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from shared.channels import Channel, Status
from shared.db.models import NotificationLog, utcnow

#: Field of the event data, copied into the message, that names its ordering key.
ORDERING_KEY_FIELD = "orderingKey"
#: The stored payload's field naming the endpoint (:class:`shared.payloads.WebhookPayload`).
CONFIGURATION_FIELD = "configurationId"

#: How often a held-back message looks again whether its predecessor has finished.
RECHECK_MS = 200

_IN_FLIGHT = (Status.QUEUED.value, Status.PROCESSING.value)


def predecessor_due(
    session: Session, message_id: str, created_at: datetime, endpoint_id: str, key: str
) -> datetime | None:
    """When the earliest unfinished earlier message to ``endpoint_id`` with ordering ``key``
    is planned (now, for one being sent); None when the message may go."""
    earlier = or_(
        NotificationLog.created_at < created_at,
        and_(NotificationLog.created_at == created_at, NotificationLog.id < message_id),
    )
    row = session.execute(
        select(NotificationLog.status, NotificationLog.next_attempt_at)
        .where(
            NotificationLog.channel == Channel.WEBHOOK.value,
            NotificationLog.status.in_(_IN_FLIGHT),
            NotificationLog.payload[CONFIGURATION_FIELD].as_string() == endpoint_id,
            NotificationLog.payload[ORDERING_KEY_FIELD].as_string() == key,
            earlier,
        )
        .order_by(NotificationLog.created_at, NotificationLog.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    now = utcnow()
    planned: datetime | None = row.next_attempt_at
    if row.status == Status.PROCESSING.value or planned is None:
        return now
    return max(now, planned)
