"""In-app notifications through the real broker and database, end to end."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import Notification
from shared.db.rls import system_scope
from tests.conftest import Fleet, final_status


def test_in_app_message_lands_in_the_inbox(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given an in-app worker, when a notification is sent, then the user's inbox has it and
    the message is delivered after one attempt."""
    fleet(settings, [Channel.IN_APP])
    service = NotificationService(settings)

    message_id = service.send_in_app_notification(
        user_id="user-123",
        title="New Message",
        message="You have a new message",
        type="info",
        action_url="/m/1",
    )

    view = final_status(service, message_id)
    assert view["status"] == "delivered"
    assert view["attempts"] == 1
    with system_scope(settings.database_url) as session:
        row = session.scalars(select(Notification).where(Notification.user_id == "user-123")).one()
        assert (row.title, row.message, row.type, row.action_url) == (
            "New Message",
            "You have a new message",
            "info",
            "/m/1",
        )
        assert row.notification_log_id == message_id


def test_a_duplicate_delivery_inserts_once(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given a delivered in-app message, when the broker delivers its id again, then the inbox
    still has one row and the status is unchanged."""
    running = fleet(settings, [Channel.IN_APP])
    service = NotificationService(settings)
    message_id = service.send_in_app_notification(user_id="u-dup", title="t", message="m")
    final_status(service, message_id)

    from shared.broker import publish

    publish(running.broker, Channel.IN_APP, message_id)
    running.broker.join(Channel.IN_APP.queue_name, timeout=10_000)

    with system_scope(settings.database_url) as session:
        count = session.scalar(
            select(func.count()).select_from(Notification).where(Notification.user_id == "u-dup")
        )
    assert count == 1
    assert service.get_status(message_id)["attempts"] == 1
