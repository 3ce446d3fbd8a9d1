"""The in-app pool: a message becomes a row in the user's inbox (``notifications``).

The row is keyed by the message id, so a redelivered message finds its row already there
and counts as delivered instead of inserting a second one. The rows of every worker thread
of the process are inserted together (:class:`~shared.db.group_commit.GroupCommit`); once
they are committed, each new notification and its user's unread count are announced to
the user's open streams.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from shared.channels import Channel
from shared.config import Settings
from shared.db.group_commit import GroupCommit
from shared.db.models import Notification, utcnow
from shared.db.rls import act_as_system
from shared.errors import TemporaryDeliveryError
from shared.payloads import InAppPayload
from shared.realtime.announce import announce, count_event, notification_event
from workers.delivery.pipeline import Pipeline
from workers.providers.inbox import InboxProvider

_NOTIFICATIONS = cast(Table, Notification.__table__)
_EXISTING = select(_NOTIFICATIONS.c.id, _NOTIFICATIONS.c.notification_log_id).where(
    _NOTIFICATIONS.c.notification_log_id.in_(bindparam("ids", expanding=True))
)
_UNREAD = (
    select(_NOTIFICATIONS.c.user_id, func.count())
    .where(
        _NOTIFICATIONS.c.user_id.in_(bindparam("users", expanding=True)),
        and_(_NOTIFICATIONS.c.read_at.is_(None), _NOTIFICATIONS.c.deleted_at.is_(None)),
    )
    .group_by(_NOTIFICATIONS.c.user_id)
)


@dataclass(frozen=True, slots=True)
class NewNotification:
    owner: str
    message_id: str
    payload: InAppPayload


@dataclass(frozen=True, slots=True)
class Added:
    notification_id: str
    #: The row written now, and its user's unread count after the batch; None for a
    #: redelivered message whose row was already there (nothing to announce).
    row: Notification | None = None
    unread: int = 0


class DatabaseInbox:
    """The users' inboxes in the database, announced over the realtime fan-out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.writer: GroupCommit[NewNotification, Added] = GroupCommit(
            "inbox", settings.database_url, self._add_batch, before=act_as_system
        )

    async def add(self, owner: str, message_id: str, payload: InAppPayload) -> str:
        try:
            added = await self.writer.call(NewNotification(owner, message_id, payload))
        except OperationalError as exc:
            raise TemporaryDeliveryError(f"database unavailable: {exc.orig}", code="db_unavailable") from exc
        if added.row is not None:
            announce(self.settings, notification_event(added.row), count_event(owner, added.unread))
        return added.notification_id

    async def close(self) -> None:
        await self.writer.stop()

    def _add_batch(self, connection: Connection, items: Sequence[NewNotification]) -> list[Added]:
        now = utcnow()
        rows = {
            item.message_id: Notification(
                id=str(uuid.uuid4()),
                user_id=item.owner,
                notification_log_id=item.message_id,
                title=item.payload.title,
                message=item.payload.message,
                type=item.payload.type,
                action_url=item.payload.action_url,
                data=item.payload.data,
                created_at=now,
            )
            for item in items
        }
        values = [_values(row) for row in rows.values()]
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(_NOTIFICATIONS)
            .on_conflict_do_nothing(index_elements=["notification_log_id"])
            .returning(_NOTIFICATIONS.c.notification_log_id)
        )
        inserted = {r.notification_log_id for r in connection.execute(statement, values)}
        before = [i.message_id for i in items if i.message_id not in inserted]
        existing = (
            {r.notification_log_id: r.id for r in connection.execute(_EXISTING, {"ids": before})}
            if before
            else {}
        )
        owners = list({i.owner for i in items if i.message_id in inserted})
        unread: dict[str, int] = (
            {user: int(count) for user, count in connection.execute(_UNREAD, {"users": owners})}
            if owners
            else {}
        )
        added = []
        for item in items:
            if item.message_id in inserted:
                row = rows[item.message_id]
                added.append(Added(row.id, row, unread.get(item.owner, 0)))
            elif item.message_id in existing:
                added.append(Added(existing[item.message_id]))
            else:  # the insert conflicted, yet no row holds the message: retried alone
                raise RuntimeError(f"notification for message {item.message_id} neither inserted nor found")
        return added


#: The columns a new notification is written with (read_at, seen_at and deleted_at start empty).
_WRITTEN = [c.key for c in _NOTIFICATIONS.columns if c.key not in {"read_at", "seen_at", "deleted_at"}]


def _values(row: Notification) -> dict[str, Any]:
    return {key: getattr(row, key) for key in _WRITTEN}


class InAppPipeline(Pipeline):
    def __init__(self, settings: Settings) -> None:
        self.inbox = DatabaseInbox(settings)
        super().__init__(Channel.IN_APP, InboxProvider(self.inbox), settings)

    async def close(self) -> None:
        await super().close()
        await self.inbox.close()


def build_pipeline(settings: Settings) -> Pipeline:
    return InAppPipeline(settings)
