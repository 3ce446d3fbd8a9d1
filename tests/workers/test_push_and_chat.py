"""The push and chat channels beyond one happy message, end to end through the real RabbitMQ
and PostgreSQL to real protocol peers (tests/sinks/apps.py): devices the push services say
are gone are removed, the users' preferences, quiet hours and critical rules apply, templates
render per channel with their locale fallback, rules reach devices and chat destinations, and
the chat tools' hints (Retry-After, a removed webhook) are followed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from producer.events import EventNotificationService
from producer.service import NotificationService
from shared.config import Settings
from shared.db.models import NotificationLog, PushTargetRow, UserContact, UserNotificationPreference
from shared.db.rls import system_scope, user_scope
from shared.db.session import session_scope
from shared.errors import ValidationError
from shared.events import contacts, rules
from shared.preferences import PreferencesInput, replace
from shared.templates import store
from tests.conftest import Fleet, final_status
from tests.sinks.apps import PUSH_USER, AppPeers, Devices
from tests.sinks.slack_peer import DEFAULT_CHANNEL as SLACK_CHANNEL
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def apps() -> Iterator[AppPeers]:
    with AppPeers.started() as peers:
        yield peers


@pytest.fixture
def app_settings(make_settings: Callable[..., Settings], apps: AppPeers) -> Settings:
    apps.reset()
    return make_settings(**apps.settings())


@pytest.fixture
def devices(app_settings: Settings, apps: AppPeers) -> Devices:
    return apps.register_devices(app_settings.database_url)


@pytest.fixture
def service(app_settings: Settings, fleet: Callable[..., Fleet]) -> NotificationService:
    fleet(app_settings, events=True)
    return NotificationService(app_settings)


def device_kinds(settings: Settings, user_id: str = PUSH_USER) -> list[str]:
    with system_scope(settings.database_url) as session:
        query = (
            select(PushTargetRow.kind).where(PushTargetRow.user_id == user_id).order_by(PushTargetRow.kind)
        )
        return list(session.scalars(query))


def save_template(settings: Settings, **fields: Any) -> None:
    with session_scope(settings.database_url) as session:
        store.save(session, store.TemplateInput.model_validate(fields), default_locale="en")


def add_rule(settings: Settings, **fields: Any) -> None:
    with session_scope(settings.database_url) as session:
        rule = rules.RuleInput.model_validate({"name": "rule", **fields})
        rules.create(session, rule, default_locale="en", encryption_keys=settings.webhooks.encryption_keys)


def set_preferences(settings: Settings, user_id: str, **fields: Any) -> None:
    with user_scope(settings.database_url, user_id) as session:
        row = session.get(UserNotificationPreference, user_id)
        if row is None:
            row = UserNotificationPreference(user_id=user_id, event_preferences={}, timezone="UTC")
            session.add(row)
        replace(row, PreferencesInput.model_validate(fields))


def test_gone_devices_are_removed_and_the_others_still_get_it(
    apps: AppPeers, devices: Devices, service: NotificationService, app_settings: Settings
) -> None:
    """Given a user whose browser unsubscribed and whose Android app was uninstalled, a push
    reaches the iPhone, is sent, names the two that failed, and both are removed."""
    apps.push.unsubscribe(devices.browser)
    apps.fcm.unregister(devices.android)

    view = final_status(service, service.send_push(user_id=PUSH_USER, title="Hi", body="Only the iPhone"))

    assert view["status"] == "sent", view
    assert "1 of 3 devices" in view["lastError"]
    assert "push_subscription_gone" in view["lastError"] and "push_token_gone" in view["lastError"]
    assert apps.apns.wait_for(1)[0].payload["aps"]["alert"] == {"title": "Hi", "body": "Only the iPhone"}
    assert device_kinds(app_settings) == ["apns"]


def test_a_push_to_nobody_fails_and_says_why(service: NotificationService, app_settings: Settings) -> None:
    view = final_status(service, service.send_push(user_id="no-devices", title="Hi"))

    assert (view["status"], view["errorCode"]) == ("failed", "no_push_targets")


def test_every_device_gone_fails_the_push_for_good(
    apps: AppPeers, devices: Devices, service: NotificationService, app_settings: Settings
) -> None:
    apps.push.unsubscribe(devices.browser)
    apps.fcm.unregister(devices.android)
    apps.apns.unregister(devices.iphone)

    view = final_status(service, service.send_push(user_id=PUSH_USER, title="Hi"))

    assert (view["status"], view["errorCode"], view["attempts"]) == ("failed", "push_targets_gone", 1)
    assert device_kinds(app_settings) == []


def test_the_push_reaches_each_service_in_its_own_shape(
    apps: AppPeers, devices: Devices, service: NotificationService
) -> None:
    service.send_push(
        user_id=PUSH_USER,
        title="Order 7 shipped",
        body="It arrives Friday",
        url="https://shop.example.com/orders/7",
        data={"orderId": 7},
        ttl=3600,
        urgency="high",
        topic="order-7",
    )

    (browser,) = apps.push.wait_for(1)
    assert browser.payload["title"] == "Order 7 shipped" and browser.payload["tag"] == "order-7"
    assert browser.payload["data"] == {"orderId": "7"}
    assert (browser.headers["ttl"], browser.headers["urgency"]) == ("3600", "high")
    (android,) = apps.fcm.wait_for(1)
    message = android.message
    assert message["token"] == devices.android
    assert message["notification"] == {"title": "Order 7 shipped", "body": "It arrives Friday"}
    assert message["android"]["priority"] == "HIGH" and message["android"]["ttl"] == "3600s"
    (iphone,) = apps.apns.wait_for(1)
    assert iphone.headers["apns-priority"] == "10" and iphone.headers["apns-collapse-id"] == "order-7"
    assert iphone.payload["url"] == "https://shop.example.com/orders/7"


def test_an_opted_out_user_is_skipped_but_a_critical_rule_still_reaches_them(
    apps: AppPeers, devices: Devices, service: NotificationService, app_settings: Settings
) -> None:
    set_preferences(app_settings, PUSH_USER, pushEnabled=False, chatEnabled=False)
    save_template(
        app_settings, key="security.alert", channel="push", title="New sign-in", message="From {{city}}"
    )

    skipped = final_status(service, service.send_push(user_id=PUSH_USER, title="Sale!"))
    add_rule(
        app_settings,
        eventType="security.login",
        channels=["push"],
        templateKey="security.alert",
        critical=True,
    )
    EventNotificationService(app_settings).process_event(
        "security.login", user_id=PUSH_USER, data={"city": "Lyon"}
    )

    assert skipped["status"] == "skipped" and skipped["errorCode"] == "preference_opt_out"
    assert apps.apns.wait_for(1)[0].payload["aps"]["alert"] == {"title": "New sign-in", "body": "From Lyon"}


def test_quiet_hours_hold_push_and_chat(
    apps: AppPeers, devices: Devices, service: NotificationService, app_settings: Settings
) -> None:
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=2)).strftime("%H:%M")
    set_preferences(app_settings, PUSH_USER, quietHours={"start": start, "end": end, "timezone": "UTC"})

    held = [
        service.send_push(user_id=PUSH_USER, title="At night"),
        service.send_chat(service="slack", to=SLACK_CHANNEL, user_id=PUSH_USER, text="At night"),
    ]

    def deferred() -> bool:
        with system_scope(app_settings.database_url) as session:
            rows = session.scalars(select(NotificationLog).where(NotificationLog.id.in_(held))).all()
            return len(rows) == 2 and all(r.error_code == "deferred" and r.status == "queued" for r in rows)

    wait_until(deferred, message="push and chat were not held for quiet hours")
    assert apps.push.deliveries == [] and apps.slack.posts == []


def test_a_templated_push_falls_back_to_the_default_locale(
    apps: AppPeers, devices: Devices, service: NotificationService, app_settings: Settings
) -> None:
    save_template(
        app_settings,
        key="order.shipped",
        channel="push",
        title="Order {{orderId}} shipped",
        message="Arrives {{day}}",
        actionUrl="/orders/{{orderId}}",
        sampleData={"orderId": 1, "day": "Monday"},
    )
    save_template(
        app_settings,
        key="order.shipped",
        channel="push",
        locale="fr",
        title="Commande {{orderId}}",
        message="Arrive {{day}}",
    )

    german = service.send_push(
        user_id=PUSH_USER, template="order.shipped", locale="de", data={"orderId": 8, "day": "Friday"}
    )
    french = service.send_push(
        user_id=PUSH_USER, template="order.shipped", locale="fr", data={"orderId": 9, "day": "vendredi"}
    )

    assert final_status(service, german)["status"] == final_status(service, french)["status"] == "sent"
    titles = sorted(d.payload["title"] for d in apps.push.wait_for(2))
    assert titles == ["Commande 9", "Order 8 shipped"]
    assert {d.payload.get("url") for d in apps.push.deliveries} >= {"/orders/8"}


def test_a_templated_chat_message_renders_slack_blocks_and_a_teams_card(
    apps: AppPeers, service: NotificationService, app_settings: Settings
) -> None:
    save_template(
        app_settings,
        key="deploy.done",
        channel="chat",
        text="Deploy {{version}} finished",
        payload={
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Deploy {{version}}* finished"}}
            ],
            "card": {
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{"type": "TextBlock", "text": "Deploy {{version}} finished", "wrap": True}],
            },
        },
        sampleData={"version": "1"},
    )
    teams_hook = apps.teams.new_webhook()

    service.send_chat(service="slack", to=SLACK_CHANNEL, template="deploy.done", data={"version": "42"})
    service.send_chat(service="teams", webhook_url=teams_hook, template="deploy.done", data={"version": "43"})

    (slack,) = apps.slack.wait_for(1)
    assert slack.text == "Deploy 42 finished"
    assert slack.blocks[0]["text"]["text"] == "*Deploy 42* finished"
    (teams,) = apps.teams.wait_for(1)
    assert teams.card["body"][0]["text"] == "Deploy 43 finished"


def test_a_rule_posts_to_its_slack_channel_and_the_users_teams_webhook(
    apps: AppPeers, devices: Devices, service: NotificationService, app_settings: Settings
) -> None:
    save_template(
        app_settings, key="incident", channel="chat", text="Incident {{id}} opened", sampleData={"id": 1}
    )
    save_template(app_settings, key="incident", channel="push", title="Incident {{id}}", message="Opened")
    add_rule(
        app_settings,
        eventType="incident.opened",
        channels=["chat", "push"],
        templateKey="incident",
        chat={"service": "slack", "channel": SLACK_CHANNEL},
    )
    add_rule(
        app_settings,
        eventType="incident.opened",
        channels=["chat"],
        templateKey="incident",
        chat={"service": "teams"},
    )
    teams_hook = apps.teams.new_webhook()
    with user_scope(app_settings.database_url, PUSH_USER) as session:
        given = contacts.ContactInput(teamsWebhookUrl=teams_hook)
        contacts.put(session, PUSH_USER, given, encryption_keys=app_settings.webhooks.encryption_keys)

    EventNotificationService(app_settings).process_event("incident.opened", user_id=PUSH_USER, data={"id": 7})

    assert apps.slack.wait_for(1)[0].text == "Incident 7 opened"
    assert apps.teams.wait_for(1)[0].card["body"][0]["text"] == "Incident 7 opened"
    assert apps.push.wait_for(1)[0].payload["title"] == "Incident 7"
    with system_scope(app_settings.database_url) as session:
        stored = " ".join(json.dumps(p) for p in session.scalars(select(NotificationLog.payload)))
        recipients = set(session.scalars(select(NotificationLog.recipient)))
    assert teams_hook not in stored  # sealed in the message, opened only by the worker
    assert recipients >= {f"slack:{SLACK_CHANNEL}", f"teams:user:{PUSH_USER}", PUSH_USER}


def test_slacks_retry_after_is_honoured(apps: AppPeers, service: NotificationService) -> None:
    apps.slack.rate_limit_next(retry_after=1)
    started = time.monotonic()

    view = final_status(service, service.send_chat(service="slack", to=SLACK_CHANNEL, text="Busy"))

    assert (view["status"], view["attempts"]) == ("delivered", 2)
    assert time.monotonic() - started >= 1.0


def test_a_removed_webhook_fails_the_message_for_good(apps: AppPeers, service: NotificationService) -> None:
    hook = apps.teams.new_webhook()
    apps.teams.remove_webhook(hook, status=410)

    view = final_status(service, service.send_chat(service="teams", webhook_url=hook, text="Anyone?"))

    assert (view["status"], view["errorCode"], view["attempts"]) == ("failed", "chat_webhook_gone", 1)
    assert hook.split("/")[-1] not in view["lastError"]


def test_a_removed_webhook_leaves_the_users_contacts(
    apps: AppPeers, service: NotificationService, app_settings: Settings
) -> None:
    """Given a user whose Teams webhook was removed, the message to them fails for good and the
    webhook leaves their contacts: the next message to them is refused at the door."""
    hook = apps.teams.new_webhook()
    with user_scope(app_settings.database_url, "ann") as session:
        given = contacts.ContactInput(teamsWebhookUrl=hook)
        contacts.put(session, "ann", given, encryption_keys=app_settings.webhooks.encryption_keys)
    apps.teams.remove_webhook(hook, status=404)

    view = final_status(service, service.send_chat(service="teams", user_id="ann", text="Anyone?"))

    assert (view["status"], view["errorCode"]) == ("failed", "chat_webhook_gone")
    with system_scope(app_settings.database_url) as session:
        row = session.get(UserContact, "ann")
        assert row is not None and row.teams_webhook_url is None
    with pytest.raises(ValidationError, match="has no Teams webhook"):
        service.send_chat(service="teams", user_id="ann", text="Again?")
