"""Events through rules, templates and preferences, end to end: the real RabbitMQ, the events
actor and the channel actors, PostgreSQL (as the non-owner application role), an SMTP sink
and a Twilio-compatible SMS sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from producer import EventType
from producer.events import EventNotificationService
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import EventLog, Notification, NotificationLog, UserNotificationPreference, utcnow
from shared.db.rls import system_scope, user_scope
from shared.db.session import session_scope
from shared.events import contacts, rules
from shared.events.queue import publish_event
from shared.preferences import PreferencesInput, replace
from shared.templates import store
from tests.conftest import Fleet, final_status, settings_with
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.twilio_sink import TwilioSink
from tests.waiting import wait_until

TWILIO_SID = "AC" + "2" * 32
TWILIO_TOKEN = "twilio-events-token"
USER = "user-42"


@pytest.fixture
def twilio() -> Iterator[TwilioSink]:
    with TwilioSink(TWILIO_SID, TWILIO_TOKEN) as sink:
        yield sink


@pytest.fixture
def flow_settings(make_settings: Callable[..., Settings], smtp: SmtpSink, twilio: TwilioSink) -> Settings:
    return make_settings(
        EMAIL_HOST=smtp.host,
        EMAIL_PORT=str(smtp.port),
        TWILIO_ACCOUNT_SID=TWILIO_SID,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        TWILIO_PHONE_NUMBER="+15005550006",
        TWILIO_API_BASE=twilio.base_url,
    )


@pytest.fixture
def running(flow_settings: Settings, fleet: Callable[..., Fleet]) -> Fleet:
    return fleet(flow_settings, events=True)


@pytest.fixture
def events(flow_settings: Settings, running: Fleet) -> EventNotificationService:
    return EventNotificationService(flow_settings)


def save_template(settings: Settings, **fields: Any) -> None:
    with session_scope(settings.database_url) as session:
        store.save(session, store.TemplateInput.model_validate(fields), default_locale="en")


def add_rule(settings: Settings, **fields: Any) -> str:
    body = {"name": "rule", "templateKey": "payment-failed", **fields}
    with session_scope(settings.database_url) as session:
        return rules.create(session, rules.RuleInput.model_validate(body), default_locale="en").id


def set_preferences(settings: Settings, user_id: str, **fields: Any) -> None:
    with user_scope(settings.database_url, user_id) as session:
        row = session.get(UserNotificationPreference, user_id)
        if row is None:
            row = UserNotificationPreference(user_id=user_id, event_preferences={}, timezone="UTC")
            session.add(row)
        replace(row, PreferencesInput.model_validate(fields))


@pytest.fixture
def payment_failed(flow_settings: Settings) -> None:
    """Templates for subscription.payment_failed on email, SMS and in-app, and the user's contacts."""
    save_template(flow_settings, key="layout-footer", channel="partial", text="-- The {{company}} team")
    save_template(
        flow_settings,
        key="payment-failed",
        channel="email",
        subject="Payment of {{currency amount currency}} failed",
        text="Hi {{name}}, your {{plan}} payment failed.\n{{> layout-footer}}",
        html="<p>Hi {{name}}, your <b>{{plan}}</b> payment failed.</p>{{> layout-footer}}",
        sampleData={"name": "Ann", "plan": "Pro", "amount": 10, "currency": "USD", "company": "KAI"},
    )
    save_template(
        flow_settings,
        key="payment-failed",
        channel="sms",
        sms="{{name}}: payment of {{currency amount currency}} failed",
        sampleData={"name": "Ann", "amount": 10, "currency": "USD"},
    )
    save_template(
        flow_settings,
        key="payment-failed",
        channel="in_app",
        title="Payment failed",
        message="Your {{plan}} payment of {{currency amount currency}} failed",
        actionUrl="/billing/{{invoiceId}}",
        sampleData={"plan": "Pro", "amount": 10, "currency": "USD", "invoiceId": "1"},
    )
    with system_scope(flow_settings.database_url) as session:
        contacts.put(session, USER, contacts.ContactInput(email="ann@example.com", phone="+14155550100"))


EVENT_DATA = {
    "name": "Ann <&>",
    "plan": "Pro",
    "amount": 49.5,
    "currency": "EUR",
    "invoiceId": "inv-7",
    "company": "KAI",
}


def event_messages(settings: Settings, event_id: str, count: int) -> list[NotificationLog]:
    """Wait until the event is processed and ``count`` of its messages exist; return them."""
    found: list[NotificationLog] = []

    def ready() -> bool:
        nonlocal found
        with system_scope(settings.database_url) as session:
            event = session.get(EventLog, event_id)
            found = list(session.scalars(select(NotificationLog).where(NotificationLog.event_id == event_id)))
            return event is not None and event.status == "processed" and len(found) >= count

    wait_until(ready, timeout=20, message=lambda: f"event {event_id} produced {len(found)} of {count}")
    return sorted(found, key=lambda m: m.channel)


def by_channel(messages: list[NotificationLog]) -> dict[str, NotificationLog]:
    return {m.channel: m for m in messages}


@pytest.mark.usefixtures("payment_failed")
def test_a_payment_failed_rule_sends_a_rendered_email_and_in_app_notification(
    flow_settings: Settings, events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given a rule for subscription.payment_failed on email and in-app, when the event comes,
    then both are rendered from the templates with the event's data and delivered, each
    linked to the event and to the template version that rendered it."""
    add_rule(flow_settings, eventType=EventType.SUBSCRIPTION_PAYMENT_FAILED, channels=["email", "in_app"])

    event_id = events.process_event(EventType.SUBSCRIPTION_PAYMENT_FAILED, user_id=USER, data=EVENT_DATA)

    messages = by_channel(event_messages(flow_settings, event_id, 2))
    service = NotificationService(flow_settings)
    assert final_status(service, messages["email"].id)["status"] == "sent"
    assert final_status(service, messages["in_app"].id)["status"] == "delivered"
    mail = smtp.wait_for(1)[0]
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Payment of €49.50 failed"
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hi Ann <&>, your Pro payment failed.\n-- The KAI team" in text
    assert "<p>Hi Ann &lt;&amp;&gt;, your <b>Pro</b> payment failed.</p>-- The KAI team" in html
    with system_scope(flow_settings.database_url) as session:
        inbox = session.scalars(select(Notification).where(Notification.user_id == USER)).one()
        assert (inbox.title, inbox.message, inbox.action_url) == (
            "Payment failed",
            "Your Pro payment of €49.50 failed",
            "/billing/inv-7",
        )
    for message in messages.values():
        assert (message.template_key, message.template_version) == ("payment-failed", 1)
        assert message.event_type == "subscription.payment_failed"


@pytest.mark.usefixtures("payment_failed")
def test_an_opted_out_channel_is_skipped_and_logged(
    flow_settings: Settings, events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given a user who turned email off, when a rule sends email and in-app, then the email
    is logged skipped with the reason and the in-app notification still arrives."""
    set_preferences(flow_settings, USER, emailEnabled=False)
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["email", "in_app"])

    event_id = events.process_event("subscription.payment_failed", user_id=USER, data=EVENT_DATA)

    messages = by_channel(event_messages(flow_settings, event_id, 2))
    service = NotificationService(flow_settings)
    skipped = final_status(service, messages["email"].id)
    assert skipped["status"] == "skipped"
    assert skipped["errorCode"] == "preference_opt_out"
    assert "turned off email" in skipped["lastError"]
    assert final_status(service, messages["in_app"].id)["status"] == "delivered"
    assert smtp.received == []


@pytest.mark.usefixtures("payment_failed")
def test_a_per_event_opt_out_applies_even_after_enqueue(
    flow_settings: Settings, fleet: Callable[..., Fleet], smtp: SmtpSink
) -> None:
    """Given a templated email already queued, when the user opts out of that event type's
    email before a worker sends it, then the worker skips it: preferences apply at send time."""
    service = NotificationService(flow_settings)
    message_id = service.send_email(
        to="ann@example.com",
        template="payment-failed",
        data=EVENT_DATA,
        user_id=USER,
        event_type="subscription.payment_failed",
    )
    set_preferences(flow_settings, USER, eventPreferences={"subscription.payment_failed": {"email": False}})
    fleet(flow_settings, [Channel.EMAIL])

    view = final_status(service, message_id)

    assert (view["status"], view["errorCode"]) == ("skipped", "preference_event_opt_out")
    assert smtp.received == []


@pytest.mark.usefixtures("payment_failed")
def test_quiet_hours_delay_an_sms_until_the_window_ends(
    flow_settings: Settings, events: EventNotificationService, twilio: TwilioSink
) -> None:
    """Given a user inside quiet hours, when a rule sends an SMS, then it is not sent but held
    (queued, parked until the window ends, no attempt counted); once the window is over it goes."""
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=2)).strftime("%H:%M")
    set_preferences(flow_settings, USER, quietHours={"start": start, "end": end, "timezone": "UTC"})
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["sms"])

    event_id = events.process_event("subscription.payment_failed", user_id=USER, data=EVENT_DATA)

    (sms,) = event_messages(flow_settings, event_id, 1)
    held: NotificationLog | None = None

    def deferred() -> bool:
        nonlocal held
        with system_scope(flow_settings.database_url) as session:
            held = session.get(NotificationLog, sms.id)
            return held is not None and held.error_code == "deferred"

    wait_until(deferred, message="SMS was not deferred")
    assert held is not None
    assert (held.status, held.attempts) == ("queued", 0)
    assert held.due_at is not None
    assert held.due_at.strftime("%H:%M") == end
    assert held.due_at > now + timedelta(hours=1)
    assert twilio.requests == []

    # The window ends: the scheduler publishes the parked message when due.
    set_preferences(flow_settings, USER, quietHours=None)
    with system_scope(flow_settings.database_url) as session:
        session.execute(update(NotificationLog).where(NotificationLog.id == sms.id).values(due_at=utcnow()))
    view = final_status(NotificationService(flow_settings), sms.id)
    assert view["status"] == "sent"
    assert twilio.wait_for(1)[0].body == "Ann <&>: payment of €49.50 failed"


@pytest.mark.usefixtures("payment_failed")
def test_a_critical_rule_bypasses_opt_outs(
    flow_settings: Settings, events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given a user who turned email off, when a critical rule fires, then the email is sent."""
    set_preferences(flow_settings, USER, emailEnabled=False)
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["email"], critical=True)

    event_id = events.process_event("subscription.payment_failed", user_id=USER, data=EVENT_DATA)

    (email,) = event_messages(flow_settings, event_id, 1)
    assert final_status(NotificationService(flow_settings), email.id)["status"] == "sent"
    assert len(smtp.wait_for(1)) == 1


@pytest.mark.usefixtures("payment_failed")
def test_a_redelivered_event_produces_no_duplicates(
    flow_settings: Settings, events: EventNotificationService, running: Fleet, smtp: SmtpSink
) -> None:
    """Given a processed event, when the broker delivers it again, then no second message is
    created and nothing is sent twice."""
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["email", "in_app"])
    event_id = events.process_event("subscription.payment_failed", user_id=USER, data=EVENT_DATA)
    messages = event_messages(flow_settings, event_id, 2)
    service = NotificationService(flow_settings)
    for message in messages:
        final_status(service, message.id)

    publish_event(running.broker, event_id)
    publish_event(running.broker, event_id)
    running.broker.join("events", timeout=10_000)
    for channel in (Channel.EMAIL, Channel.IN_APP):
        running.broker.join(channel.queue_name, timeout=10_000)

    assert len(event_messages(flow_settings, event_id, 2)) == 2
    assert len(smtp.received) == 1
    with system_scope(flow_settings.database_url) as session:
        assert len(session.scalars(select(Notification).where(Notification.user_id == USER)).all()) == 1


@pytest.mark.usefixtures("payment_failed")
def test_an_event_idempotency_key_queues_the_event_once(
    flow_settings: Settings, events: EventNotificationService
) -> None:
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["in_app"])
    first = events.process_event(
        "subscription.payment_failed", USER, EVENT_DATA, idempotency_key="inv-7-fail"
    )
    again = events.process_event(
        "subscription.payment_failed", USER, EVENT_DATA, idempotency_key="inv-7-fail"
    )

    assert first == again
    assert len(event_messages(flow_settings, first, 1)) == 1


@pytest.mark.usefixtures("payment_failed")
def test_conditions_decide_which_rules_fire(
    flow_settings: Settings, events: EventNotificationService
) -> None:
    """Given a rule only for amounts over 100, then a small payment matches nothing and a
    large one sends."""
    add_rule(
        flow_settings,
        eventType="subscription.payment_failed",
        channels=["in_app"],
        conditions=["data.amount > 100"],
    )

    small = events.process_event("subscription.payment_failed", USER, {**EVENT_DATA, "amount": 50})
    large = events.process_event("subscription.payment_failed", USER, {**EVENT_DATA, "amount": 150})

    assert len(event_messages(flow_settings, large, 1)) == 1
    assert event_messages(flow_settings, small, 0) == []
    with system_scope(flow_settings.database_url) as session:
        small_row = session.get(EventLog, small)
        assert small_row is not None and small_row.matched_rules == 0


def test_an_unknown_event_type_is_accepted_and_matches_nothing(
    flow_settings: Settings, events: EventNotificationService
) -> None:
    event_id = events.process_event("something.nobody.configured", user_id=USER, data={"x": 1})

    assert event_messages(flow_settings, event_id, 0) == []


@pytest.mark.usefixtures("payment_failed")
def test_a_missing_variable_fails_that_message_with_the_reason(
    flow_settings: Settings, events: EventNotificationService, smtp: SmtpSink
) -> None:
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["email"])
    data = {k: v for k, v in EVENT_DATA.items() if k != "plan"}

    event_id = events.process_event("subscription.payment_failed", user_id=USER, data=data)

    (email,) = event_messages(flow_settings, event_id, 1)
    view = final_status(NotificationService(flow_settings), email.id)
    assert (view["status"], view["errorCode"]) == ("failed", "template_render_error")
    assert "missing variable 'plan'" in view["lastError"]
    assert smtp.received == []


@pytest.mark.usefixtures("payment_failed")
def test_a_user_without_a_phone_number_gets_a_skipped_sms(
    flow_settings: Settings, events: EventNotificationService
) -> None:
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["sms"])

    event_id = events.process_event("subscription.payment_failed", user_id="nobody", data=EVENT_DATA)

    (sms,) = event_messages(flow_settings, event_id, 1)
    assert (sms.status, sms.error_code) == ("skipped", "no_recipient")


@pytest.mark.usefixtures("payment_failed")
def test_a_queued_message_renders_the_version_it_was_enqueued_with(
    flow_settings: Settings, fleet: Callable[..., Fleet], smtp: SmtpSink
) -> None:
    """Given an email queued with template version 1, when the template is edited before a
    worker sends it, then the email still renders version 1; new sends use version 2."""
    service = NotificationService(flow_settings)
    first = service.send_email(to="ann@example.com", template="payment-failed", data=EVENT_DATA)
    save_template(
        flow_settings,
        key="payment-failed",
        channel="email",
        subject="Edited: {{plan}}",
        text="Edited",
        sampleData={"plan": "Pro"},
    )
    second = service.send_email(to="ann@example.com", template="payment-failed", data=EVENT_DATA)
    fleet(flow_settings, [Channel.EMAIL])

    final_status(service, first)
    final_status(service, second)

    subjects = sorted(m["Subject"] for m in smtp.wait_for(2))
    assert subjects == ["Edited: Pro", "Payment of €49.50 failed"]


def test_an_in_app_notification_can_be_sent_from_a_template(
    flow_settings: Settings, fleet: Callable[..., Fleet], payment_failed: None
) -> None:
    fleet(flow_settings, [Channel.IN_APP])
    service = NotificationService(flow_settings)

    message_id = service.send_in_app_notification(user_id=USER, template="payment-failed", data=EVENT_DATA)

    assert final_status(service, message_id)["status"] == "delivered"
    with user_scope(flow_settings.database_url, USER) as session:
        inbox = session.scalars(select(Notification)).one()
    assert (inbox.title, inbox.action_url) == ("Payment failed", "/billing/inv-7")


@pytest.mark.usefixtures("payment_failed")
def test_a_malformed_address_in_the_event_data_is_skipped_with_the_reason(
    flow_settings: Settings, events: EventNotificationService
) -> None:
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["email", "sms"])

    event_id = events.process_event(
        "subscription.payment_failed", user_id=USER, data={**EVENT_DATA, "email": "nope", "phone": "12"}
    )

    messages = by_channel(event_messages(flow_settings, event_id, 2))
    assert {(m.status, m.error_code) for m in messages.values()} == {("skipped", "invalid_recipient")}
    assert "invalid email address" in (messages["email"].last_error or "")


@pytest.mark.usefixtures("payment_failed")
def test_an_event_the_broker_lost_is_published_again(
    flow_settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an accepted event whose publish never happened (a crash between the row insert
    and the publish), when it is still queued after RESCUE_AFTER, then an events worker
    publishes it again and it is processed."""
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["in_app"])
    with system_scope(flow_settings.database_url) as session:
        session.add(
            EventLog(
                id="lost-event",
                event_type="subscription.payment_failed",
                user_id=USER,
                data=EVENT_DATA,
                status="queued",
                created_at=utcnow() - timedelta(minutes=5),
            )
        )
    fleet(settings_with(flow_settings, rescue_after_ms=1000), [Channel.IN_APP], events=True)

    (message,) = event_messages(flow_settings, "lost-event", 1)
    assert final_status(NotificationService(flow_settings), message.id)["status"] == "delivered"


@pytest.mark.usefixtures("payment_failed")
def test_a_delayed_rule_parks_its_message_until_due(
    flow_settings: Settings, events: EventNotificationService, running: Fleet
) -> None:
    """Given a rule with a one-hour delay, the message is created parked (due in an hour) and
    not handed to the broker."""
    add_rule(flow_settings, eventType="subscription.payment_failed", channels=["in_app"], delayMs=3_600_000)
    before = datetime.now(UTC)

    event_id = events.process_event("subscription.payment_failed", user_id=USER, data=EVENT_DATA)

    event_messages(flow_settings, event_id, 1)
    running.broker.join("events", timeout=10_000)
    running.broker.join(Channel.IN_APP.queue_name, timeout=10_000)

    (message,) = event_messages(flow_settings, event_id, 1)
    assert (message.status, message.attempts) == ("queued", 0)
    assert message.due_at is not None
    assert before + timedelta(minutes=59) < message.due_at < before + timedelta(minutes=61)
