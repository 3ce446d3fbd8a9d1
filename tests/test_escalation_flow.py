"""Escalation across channels, end to end: a rule's later steps wait ``scheduled`` in
PostgreSQL and go only if their condition on the first step's message still holds when they
are due; reading the first step's notification cancels them at once. The real RabbitMQ, the
events actor, the channel actors with their scheduler, an SMTP sink and a Twilio-compatible
SMS sink."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from producer.events import EventNotificationService
from producer.service import NotificationService
from shared import inbox, tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import EventLog, Notification, NotificationLog, UserNotificationPreference, utcnow
from shared.db.rls import system_scope, user_scope
from shared.db.session import session_scope
from shared.events import contacts, escalation, rules
from shared.payloads import EmailPayload, SmsPayload, Stored
from shared.preferences import PreferencesInput, replace
from shared.templates import store
from tests.conftest import Fleet, final_status
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.twilio_sink import TwilioSink
from tests.waiting import wait_until

TWILIO_SID = "AC" + "3" * 32
TWILIO_TOKEN = "twilio-escalation-token"
ANN, BOB = "ann", "bob"
EVENT = "security.alert"


@pytest.fixture
def twilio() -> Iterator[TwilioSink]:
    with TwilioSink(TWILIO_SID, TWILIO_TOKEN) as sink:
        yield sink


@pytest.fixture
def flow_settings(make_settings: Callable[..., Settings], smtp: SmtpSink, twilio: TwilioSink) -> Settings:
    settings = make_settings(
        EMAIL_HOST=smtp.host,
        EMAIL_PORT=str(smtp.port),
        TWILIO_ACCOUNT_SID=TWILIO_SID,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        TWILIO_PHONE_NUMBER="+15005550006",
        TWILIO_API_BASE=twilio.base_url,
    )
    for channel, parts in {
        "in_app": {"title": "Sign-in from {{city}}", "message": "Was it you?"},
        "email": {"subject": "Sign-in from {{city}}", "text": "Was it you, {{city}}?"},
        "sms": {"sms": "Sign-in from {{city}}: was it you?"},
    }.items():
        with session_scope(settings.database_url) as session:
            given = store.TemplateInput.model_validate({"key": "alert", "channel": channel, **parts})
            store.save(session, given, default_locale="en")
    with system_scope(settings.database_url) as session:
        contacts.put(session, ANN, contacts.ContactInput(email="ann@example.com", phone="+14155550100"))
        contacts.put(session, BOB, contacts.ContactInput(email="bob@example.com", phone="+14155550101"))
    return settings


@pytest.fixture
def events(flow_settings: Settings) -> EventNotificationService:
    return EventNotificationService(flow_settings)


def add_rule(settings: Settings, steps: list[dict[str, Any]]) -> str:
    body = {"name": "escalate", "eventType": EVENT, "templateKey": "alert", "steps": steps}
    with session_scope(settings.database_url) as session:
        return rules.create(session, rules.RuleInput.model_validate(body), default_locale="en").id


def steps_of(settings: Settings, event_id: str, count: int) -> dict[str, NotificationLog]:
    """Wait until the event is processed into ``count`` messages; them by channel."""
    found: list[NotificationLog] = []

    def ready() -> bool:
        nonlocal found
        with system_scope(settings.database_url) as session:
            event = session.get(EventLog, event_id)
            found = list(session.scalars(select(NotificationLog).where(NotificationLog.event_id == event_id)))
            return event is not None and event.status == "processed" and len(found) >= count

    wait_until(ready, timeout=20, message=lambda: f"event {event_id} produced {len(found)} of {count}")
    return {m.channel: m for m in found}


def notification_of(settings: Settings, user_id: str, message_id: str) -> str:
    """Wait until the in-app message is in the user's inbox; its notification id."""
    found: list[str] = []

    def stored() -> bool:
        with user_scope(settings.database_url, user_id) as session:
            found[:] = session.scalars(
                select(Notification.id).where(Notification.notification_log_id == message_id)
            )
        return bool(found)

    wait_until(stored, timeout=20, message="the in-app notification never arrived")
    return found[0]


NOT_READ = [{"channel": "in_app"}, {"channel": "email", "after": "4s", "if": "notRead"}]


def test_an_unread_notification_escalates_to_email_after_the_delay(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given in-app now and email after 4 s if not read, when the in-app notification stays
    unread, then the email step waits ``scheduled`` (the event shows it with its condition)
    and is sent once its time has come."""
    add_rule(flow_settings, NOT_READ)
    fleet(flow_settings, events=True)

    event_id = events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"})

    sent = steps_of(flow_settings, event_id, 2)
    first, email = sent["in_app"], sent["email"]
    service = NotificationService(flow_settings)
    (escalation,) = events.get_event(event_id)["escalations"]
    assert escalation["firstMessageId"] == first.id
    assert [(s["channel"], s["if"]) for s in escalation["steps"]] == [("in_app", None), ("email", "notRead")]
    assert service.get_status(email.id)["escalation"] == {"of": first.id, "after": first.id, "if": "notRead"}
    assert final_status(service, email.id)["status"] == "sent"
    assert smtp.wait_for(1)[0]["Subject"] == "Sign-in from Oslo"
    assert final_status(service, first.id)["status"] == "delivered"


def test_reading_before_the_delay_cancels_the_email_which_is_never_sent(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given the same escalation for Ann and Bob, when Ann reads her notification before the
    email step is due, then her email step is ``canceled`` at once with the time she read it,
    and only Bob's email is ever sent."""
    add_rule(flow_settings, [NOT_READ[0], {**NOT_READ[1], "after": "5s"}])
    fleet(flow_settings, events=True)

    ann_event = events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"})
    bob_event = events.process_event(EVENT, user_id=BOB, data={"city": "Rome"})
    ann, bob = steps_of(flow_settings, ann_event, 2), steps_of(flow_settings, bob_event, 2)
    notification = notification_of(flow_settings, ANN, ann["in_app"].id)
    with user_scope(flow_settings.database_url, ANN) as session:
        assert len(inbox.mark_read(session.connection(), ANN, [notification])) == 1

    service = NotificationService(flow_settings)
    canceled = service.get_status(ann["email"].id)
    assert (canceled["status"], canceled["errorCode"]) == ("canceled", "escalation_read")
    assert canceled["lastError"].startswith("read at ")
    assert final_status(service, bob["email"].id)["status"] == "sent"
    assert [m["To"] for m in smtp.wait_for(1)] == ["bob@example.com"]
    assert service.get_status(ann["email"].id)["status"] == "canceled"
    (escalation,) = events.get_event(ann_event)["escalations"]
    assert escalation["steps"][1]["reason"] == canceled["lastError"]


def test_mark_all_as_read_cancels_every_pending_step(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given in-app, then email and SMS if not read, when the user marks all read, then both
    later steps end ``canceled`` and neither is sent."""
    add_rule(flow_settings, [*NOT_READ, {"channel": "sms", "after": "5s", "if": "notRead"}])
    fleet(flow_settings, events=True)

    event_id = events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"})
    sent = steps_of(flow_settings, event_id, 3)
    notification_of(flow_settings, ANN, sent["in_app"].id)
    with user_scope(flow_settings.database_url, ANN) as session:
        assert len(inbox.mark_all_read(session.connection(), ANN)) == 1

    service = NotificationService(flow_settings)
    for channel in ("email", "sms"):
        assert service.get_status(sent[channel].id)["status"] == "canceled"
    control = events.process_event(EVENT, user_id=BOB, data={"city": "Rome"})
    assert final_status(service, steps_of(flow_settings, control, 3)["email"].id)["status"] == "sent"
    assert [m["To"] for m in smtp.wait_for(1)] == ["bob@example.com"]


def test_a_not_delivered_step_is_canceled_at_its_time_once_the_first_was_delivered(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, twilio: TwilioSink
) -> None:
    """Given in-app now and SMS after 4 s if not delivered, when the in-app message is
    delivered, then the SMS step ends ``canceled`` when due, saying when the first went."""
    add_rule(flow_settings, [{"channel": "in_app"}, {"channel": "sms", "after": "4s", "if": "notDelivered"}])
    fleet(flow_settings, events=True)

    event_id = events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"})
    sent = steps_of(flow_settings, event_id, 2)

    service = NotificationService(flow_settings)
    view = final_status(service, sent["sms"].id)
    assert (view["status"], view["errorCode"]) == ("canceled", "escalation_not_needed")
    assert view["lastError"].startswith("delivered at ")
    assert twilio.requests == []


def test_a_failed_email_escalates_to_sms_and_a_sent_one_does_not(
    flow_settings: Settings,
    fleet: Callable[..., Fleet],
    events: EventNotificationService,
    smtp: SmtpSink,
    twilio: TwilioSink,
) -> None:
    """Given email now and SMS after 4 s if the email failed, when the mail server refuses
    Ann's address, then her SMS is sent; Bob's email went, so his SMS step is canceled."""
    add_rule(flow_settings, [{"channel": "email"}, {"channel": "sms", "after": "4s", "if": "failed"}])
    smtp.fail_always(550, "no such mailbox")
    fleet(flow_settings, events=True)

    ann = steps_of(flow_settings, events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"}), 2)
    service = NotificationService(flow_settings)
    assert final_status(service, ann["email"].id)["status"] == "failed"
    smtp.clear_faults()
    bob = steps_of(flow_settings, events.process_event(EVENT, user_id=BOB, data={"city": "Rome"}), 2)

    assert final_status(service, ann["sms"].id)["status"] in ("sent", "delivered")
    assert twilio.wait_for(1)[0].to == "+14155550100"
    bob_sms = final_status(service, bob["sms"].id)
    assert (bob_sms["status"], bob_sms["lastError"]) == ("canceled", "the step before is sent, not failed")


def test_a_third_step_reads_the_step_just_before_it_not_the_first(
    flow_settings: Settings,
    fleet: Callable[..., Fleet],
    events: EventNotificationService,
    smtp: SmtpSink,
    twilio: TwilioSink,
) -> None:
    """Given in-app now, email after 2 s if unread, SMS after 4 s if that email failed: when
    the mail server refuses Ann's address, her SMS goes (the in-app step itself did not fail);
    Bob's email went, so his SMS step is canceled, naming the email's state. Each status
    names the step it waits on."""
    add_rule(
        flow_settings,
        [
            {"channel": "in_app"},
            {"channel": "email", "after": "2s", "if": "notRead"},
            {"channel": "sms", "after": "4s", "if": "failed"},
        ],
    )
    smtp.fail_for("ann@example.com", 550, "no such mailbox")
    fleet(flow_settings, events=True)

    ann = steps_of(flow_settings, events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"}), 3)
    bob = steps_of(flow_settings, events.process_event(EVENT, user_id=BOB, data={"city": "Rome"}), 3)

    service = NotificationService(flow_settings)
    assert service.get_status(ann["sms"].id)["escalation"] == {
        "of": ann["in_app"].id,
        "after": ann["email"].id,
        "if": "failed",
    }
    assert final_status(service, ann["email"].id)["status"] == "failed"
    assert final_status(service, ann["sms"].id)["status"] in ("sent", "delivered")
    assert [r.to for r in twilio.wait_for(1)] == ["+14155550100"]
    assert final_status(service, bob["email"].id)["status"] == "sent"
    bob_sms = final_status(service, bob["sms"].id)
    assert (bob_sms["status"], bob_sms["lastError"]) == ("canceled", "the step before is sent, not failed")


def test_a_step_before_that_was_canceled_ends_the_escalation(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, twilio: TwilioSink
) -> None:
    """Given in-app now, email after 2 s if not delivered, SMS after 3 s if not delivered: the
    in-app message is delivered, so the email step is canceled when due; the SMS step then
    reads a canceled step before it and is canceled too, though that email was never
    delivered."""
    add_rule(
        flow_settings,
        [
            {"channel": "in_app"},
            {"channel": "email", "after": "2s", "if": "notDelivered"},
            {"channel": "sms", "after": "3s", "if": "notDelivered"},
        ],
    )
    fleet(flow_settings, events=True)

    sent = steps_of(flow_settings, events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"}), 3)

    service = NotificationService(flow_settings)
    assert final_status(service, sent["email"].id)["status"] == "canceled"
    sms = final_status(service, sent["sms"].id)
    assert (sms["status"], sms["errorCode"], sms["lastError"]) == (
        "canceled",
        "escalation_not_needed",
        "the step before was canceled",
    )
    assert twilio.requests == []


def test_a_pending_step_survives_a_restart_of_the_workers(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given an escalation whose email step is parked, when every worker stops before it is
    due and new ones start, then the email is sent by them: the step is a row, not a timer."""
    add_rule(flow_settings, [NOT_READ[0], {**NOT_READ[1], "after": "5s"}])
    first_fleet = fleet(flow_settings, events=True)
    sent = steps_of(flow_settings, events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"}), 2)
    first_fleet.stop()

    service = NotificationService(flow_settings)
    assert service.get_status(sent["email"].id)["status"] == "scheduled"
    fleet(flow_settings)
    assert final_status(service, sent["email"].id)["status"] == "sent"
    assert len(smtp.wait_for(1)) == 1


def test_the_users_opt_out_applies_to_a_step_that_goes(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given Ann turned email off, when her unread notification escalates to email, then the
    step is taken when due like any message and ends ``skipped`` by her preference."""
    add_rule(flow_settings, NOT_READ)
    with user_scope(flow_settings.database_url, ANN) as session:
        row = UserNotificationPreference(user_id=ANN, event_preferences={}, timezone="UTC")
        session.add(row)
        replace(row, PreferencesInput.model_validate({"emailEnabled": False}))
    fleet(flow_settings, events=True)

    sent = steps_of(flow_settings, events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"}), 2)

    service = NotificationService(flow_settings)
    assert final_status(service, sent["email"].id)["status"] == "skipped"
    assert smtp.received == []


def test_reads_racing_the_scheduler_leave_each_step_sent_or_canceled_never_both(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given a dozen users whose email steps all come due within the same second, when each
    user reads her notification around that second, then each step ends either ``sent``
    (one email to her) or ``canceled`` with the time she read it (no email to her)."""
    add_rule(flow_settings, NOT_READ)
    users = [f"racer-{n}" for n in range(12)]
    fleet(flow_settings, events=True)
    started = [
        events.process_event(EVENT, user_id=user, data={"city": "Oslo", "email": f"{user}@example.com"})
        for user in users
    ]
    steps = [steps_of(flow_settings, event_id, 2) for event_id in started]
    for user, sent in zip(users, steps, strict=True):
        notification_of(flow_settings, user, sent["in_app"].id)

    due = min(sent["email"].send_at for sent in steps if sent["email"].send_at is not None)
    wait_until(lambda: utcnow() >= due, timeout=10, message="the steps never came due")

    def read(user: str) -> None:
        with user_scope(flow_settings.database_url, user) as session:
            inbox.mark_all_read(session.connection(), user)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(read, users))

    service = NotificationService(flow_settings)
    outcomes = {
        user: final_status(service, sent["email"].id) for user, sent in zip(users, steps, strict=True)
    }
    mailed = {user for user, view in outcomes.items() if view["status"] == "sent"}
    assert mailed | {u for u, v in outcomes.items() if v["status"] == "canceled"} == set(users)
    assert all(v["lastError"].startswith("read at ") for u, v in outcomes.items() if u not in mailed)
    if mailed:
        smtp.wait_for(len(mailed))
    assert sorted(m["To"] for m in smtp.messages) == sorted(f"{u}@example.com" for u in mailed)


def test_deleting_the_notification_unread_dismisses_it_and_cancels_the_steps(
    flow_settings: Settings, fleet: Callable[..., Fleet], events: EventNotificationService, smtp: SmtpSink
) -> None:
    """Given in-app now and email after 5 s if not read, when Ann deletes the notification
    without reading it, then the email step is ``canceled`` at once as dismissed, never sent."""
    add_rule(flow_settings, [NOT_READ[0], {**NOT_READ[1], "after": "5s"}])
    fleet(flow_settings, events=True)

    sent = steps_of(flow_settings, events.process_event(EVENT, user_id=ANN, data={"city": "Oslo"}), 2)
    notification = notification_of(flow_settings, ANN, sent["in_app"].id)
    with user_scope(flow_settings.database_url, ANN) as session:
        assert inbox.soft_delete(session.connection(), ANN, [notification]) == 1

    service = NotificationService(flow_settings)
    view = service.get_status(sent["email"].id)
    assert (view["status"], view["errorCode"]) == ("canceled", "escalation_read")
    assert view["lastError"].startswith("dismissed at ")
    control = events.process_event(EVENT, user_id=BOB, data={"city": "Rome"})
    assert final_status(service, steps_of(flow_settings, control, 2)["email"].id)["status"] == "sent"
    assert [m["To"] for m in smtp.wait_for(1)] == ["bob@example.com"]


def test_a_step_falling_due_between_the_check_and_the_publish_waits_to_be_checked(settings: Settings) -> None:
    """Given an email step that waits for its first (sent) step to fail and falls due just
    after the scheduler's check, then the same pass does not publish it unchecked; the next
    pass checks it and cancels it."""
    start = utcnow()
    with system_scope(settings.database_url) as session:
        first, _ = tracking.create(session, _message(Channel.SMS, "+14155550100"))
        session.execute(update(NotificationLog).where(NotificationLog.id == first).values(status="sent"))
        step, _ = tracking.create(
            session,
            dataclasses.replace(
                _message(Channel.EMAIL, "ann@example.com"),
                due_at=start + timedelta(milliseconds=1),
                send_at=start + timedelta(milliseconds=1),
                escalation_of=first,
                escalation_after=first,
                escalation_if="failed",
            ),
        )
    for now in (start, start + timedelta(seconds=1)):
        with system_scope(settings.database_url) as session:
            escalation.settle_due(session, [Channel.EMAIL], now)
            taken = tracking.take_due(
                session, channels=[Channel.EMAIL], limit=100, stale_after=timedelta(hours=1), now=now
            )
            assert taken == []
    with system_scope(settings.database_url) as session:
        row = session.get(NotificationLog, step)
        assert row is not None and (row.status, row.last_error) == (
            "canceled",
            "the step before is sent, not failed",
        )


def _message(channel: Channel, recipient: str) -> tracking.NewMessage:
    payload: SmsPayload | EmailPayload = (
        SmsPayload(to=recipient, message="hi")
        if channel is Channel.SMS
        else EmailPayload(to=recipient, subject="Sign-in", text="Was it you?")
    )
    return tracking.NewMessage(
        channel=channel, recipient=recipient, payload=Stored(payload), max_attempts=3, user_id=ANN
    )
