"""The in-app pool: a message becomes a row in the user's inbox (``notifications``).

The row is keyed by the message id, so a redelivered message finds its row already there
and counts as delivered instead of inserting a second one. Once the row is committed, the
new notification and the user's unread count are announced to the user's open streams.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.channels import Channel
from shared.config import Settings
from shared.db.models import Notification, utcnow
from shared.db.rls import user_scope
from shared.errors import TemporaryDeliveryError
from shared.inbox import unread_count
from shared.payloads import InAppPayload
from shared.realtime.announce import announce, count_event, notification_event
from workers.delivery.pipeline import Pipeline
from workers.providers.inbox import InboxProvider


class DatabaseInbox:
    """The users' inboxes in the database, announced over the realtime fan-out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def add(self, owner: str, message_id: str, payload: InAppPayload) -> str:
        try:
            # The inbox is isolated per user (row-level security): write as that user.
            with user_scope(self.settings.database_url, owner) as session:
                row = Notification(
                    id=str(uuid.uuid4()),
                    user_id=owner,
                    notification_log_id=message_id,
                    title=payload.title,
                    message=payload.message,
                    type=payload.type,
                    action_url=payload.action_url,
                    data=payload.data,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                unread = unread_count(session, owner)
        except IntegrityError:
            return self._existing(owner, message_id)
        except OperationalError as exc:
            raise TemporaryDeliveryError(f"database unavailable: {exc.orig}", code="db_unavailable") from exc
        announce(self.settings, notification_event(row), count_event(owner, unread))
        return row.id

    def _existing(self, owner: str, message_id: str) -> str:
        """The row an earlier attempt of the message wrote (a redelivery)."""
        with user_scope(self.settings.database_url, owner) as session:
            existing = session.scalar(
                select(Notification.id).where(Notification.notification_log_id == message_id)
            )
        if existing is None:
            raise TemporaryDeliveryError("the inbox refused the notification", code="db_conflict")
        return existing


def build_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(Channel.IN_APP, InboxProvider(DatabaseInbox(settings)), settings)
