"""Publishing inbox changes after they are committed, without ever failing the change.

A failed publish is logged and dropped: the rows are committed, and a client that missed the
event catches up through ``Last-Event-ID`` replay or the feed.
"""

from __future__ import annotations

from shared.config import Settings
from shared.inbox import Position, Shown, view
from shared.logging import get_logger
from shared.realtime import publisher
from shared.realtime.base import InboxEvent, RealtimeError

log = get_logger(__name__)

NOTIFICATION = "notification"
UNREAD_COUNT = "unread-count"


def notification_event(row: Shown) -> InboxEvent:
    return InboxEvent(row.user_id, NOTIFICATION, view(row), id=Position.of(row).text())


def count_event(user_id: str, unread: int) -> InboxEvent:
    return InboxEvent(user_id, UNREAD_COUNT, {"count": unread})


def announce(settings: Settings, *events: InboxEvent) -> None:
    hub = publisher(settings)
    for event in events:
        try:
            hub.publish(event)
        except RealtimeError as exc:
            log.warning("realtime.publish_failed", kind=event.kind, error=str(exc))
            return
