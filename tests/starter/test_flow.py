"""The brief's event, end to end on the starter set: ``process_event`` with only a user id
and the brief's two data fields, through the real RabbitMQ, the events actor and the channel
actors, PostgreSQL and an SMTP peer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from producer import EventType
from producer.events import EventNotificationService
from producer.service import NotificationService
from producer.starter import install_starter
from shared.config import Settings
from shared.db.models import EventLog, Notification, NotificationLog
from shared.db.rls import system_scope
from shared.events import contacts
from tests.conftest import Fleet, final_status
from tests.sinks.smtp_sink import SmtpSink
from tests.waiting import wait_until

USER = "user-123"
#: The brief's example, exactly.
BRIEF_DATA = {"subscriptionId": "sub-123", "failureReason": "insufficient_funds"}


@pytest.fixture
def starter_settings(
    make_settings: Callable[..., Settings], smtp: SmtpSink, fleet: Callable[..., Fleet]
) -> Settings:
    """The starter set installed, and the workers (events included) running."""
    settings = make_settings(EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port))
    install_starter(settings)
    fleet(settings, events=True)
    return settings


def messages_of(settings: Settings, event_id: str) -> dict[str, NotificationLog]:
    """The event's messages by channel, once it is processed and both exist."""
    found: dict[str, NotificationLog] = {}

    def ready() -> bool:
        with system_scope(settings.database_url) as session:
            event = session.get(EventLog, event_id)
            rows = session.scalars(select(NotificationLog).where(NotificationLog.event_id == event_id))
            found.update({row.channel: row for row in rows})
            return event is not None and event.status == "processed" and len(found) == 2

    wait_until(ready, timeout=20, message=lambda: f"event {event_id} produced {sorted(found)}")
    return found


def inbox_of(settings: Settings, user_id: str) -> list[Notification]:
    with system_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Notification).where(Notification.user_id == user_id)))
        session.expunge_all()
        return rows


def test_the_brief_example_delivers_an_in_app_notification_out_of_the_box(starter_settings: Settings) -> None:
    """Given only the starter set (no contacts for the user), when the brief's event is
    processed, then the user's in-app notification arrives and the email is skipped for want
    of an address."""
    events = EventNotificationService(starter_settings)

    event_id = events.process_event(EventType.SUBSCRIPTION_PAYMENT_FAILED, user_id=USER, data=BRIEF_DATA)

    messages = messages_of(starter_settings, event_id)
    service = NotificationService(starter_settings)
    assert final_status(service, messages["in_app"].id)["status"] == "delivered"
    skipped = final_status(service, messages["email"].id)
    assert skipped["status"] == "skipped"
    assert "no email address" in skipped["lastError"]
    (notification,) = inbox_of(starter_settings, USER)
    assert (notification.title, notification.action_url) == ("Payment failed", "/billing")
    assert "(insufficient_funds)" in notification.message


def test_the_brief_example_emails_the_users_contact_address(
    starter_settings: Settings, smtp: SmtpSink
) -> None:
    """Given the user's contact email (PUT /api/users/{id}/contacts), when the brief's event
    is processed, then the starter email reaches that address, beside the in-app notification."""
    with system_scope(starter_settings.database_url) as session:
        contacts.put(session, USER, contacts.ContactInput(email="ann@example.com"))
    events = EventNotificationService(starter_settings)

    event_id = events.process_event(EventType.SUBSCRIPTION_PAYMENT_FAILED, user_id=USER, data=BRIEF_DATA)

    messages = messages_of(starter_settings, event_id)
    service = NotificationService(starter_settings)
    assert final_status(service, messages["email"].id)["status"] == "sent"
    assert final_status(service, messages["in_app"].id)["status"] == "delivered"
    mail = smtp.wait_for(1)[0]
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Action needed: your subscription payment failed"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "your subscription (sub-123)" in text and "Reason: insufficient_funds" in text
    assert len(inbox_of(starter_settings, USER)) == 1
