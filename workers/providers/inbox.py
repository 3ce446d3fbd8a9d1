"""The inbox provider: an in-app message is delivered by inserting the user's
``notifications`` row, keyed by the message id so a redelivered message finds its row
already there and counts as delivered instead of inserting a second one. Once the row is
committed, the new notification and the user's unread count are announced to the user's
open streams."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.config import Settings
from shared.db.models import Notification, utcnow
from shared.db.rls import user_scope
from shared.errors import TemporaryDeliveryError
from shared.inbox import unread_count
from shared.realtime.announce import announce, count_event, notification_event
from shared.tracking import Claimed
from workers.providers.base import SendResult


class InboxProvider:
    """Delivers by inserting the inbox row."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, message: Claimed) -> SendResult:
        payload = message.payload
        notification_id = str(uuid.uuid4())
        owner = message.user_id or message.recipient
        try:
            # The inbox is isolated per user (row-level security): write as that user.
            with user_scope(self.settings.database_url, owner) as session:
                row = Notification(
                    id=notification_id,
                    user_id=owner,
                    notification_log_id=message.id,
                    title=payload["title"],
                    message=payload["message"],
                    type=payload.get("type") or "info",
                    action_url=payload.get("actionUrl"),
                    data=payload.get("data") or {},
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                unread = unread_count(session, row.user_id)
        except IntegrityError:
            with user_scope(self.settings.database_url, owner) as session:
                existing = session.scalar(
                    select(Notification.id).where(Notification.notification_log_id == message.id)
                )
            if existing is None:
                raise
            notification_id = existing
        except OperationalError as exc:
            raise TemporaryDeliveryError(f"database unavailable: {exc.orig}", code="db_unavailable") from exc
        else:
            announce(self.settings, notification_event(row), count_event(row.user_id, unread))
        return SendResult(provider_message_id=notification_id, delivered=True)

    def close(self) -> None:
        pass
