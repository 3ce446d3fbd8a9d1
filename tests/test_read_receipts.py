"""In-app receipts: an in-app message is delivered when its inbox row is written; it is seen
when its user's inbox shows it, read when its user reads it and clicked when its user follows
its action, through the inbox API. Each is kept once as the message's receipt and forwarded
to webhook endpoints subscribed to ``message.seen``, ``message.read`` or ``message.clicked``,
end to end through the real RabbitMQ, PostgreSQL, worker actors and gateway."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection
from standardwebhooks import Webhook

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared import inbox
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import SERVER_KEY, Fleet, final_status
from tests.gateway.inbox import user_headers
from tests.gateway.server import LiveServer
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.webhook_events import create_endpoint


@dataclass
class World:
    settings: Settings
    service: NotificationService
    gateway: httpx.Client


@pytest.fixture
def world(settings: Settings, fleet: Callable[..., Fleet]) -> Iterator[World]:
    fleet(settings, [Channel.IN_APP, Channel.WEBHOOK])
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield World(settings, NotificationService(settings), client)


def delivered(world: World, user_id: str, title: str, **more: str) -> tuple[str, str]:
    """An in-app message delivered to ``user_id``: its id and its notification's."""
    message_id = world.service.send_in_app_notification(user_id=user_id, title=title, message="Hello", **more)
    assert final_status(world.service, message_id)["status"] == "delivered"
    items = world.gateway.get("/api/notifications", headers=user_headers(user_id)).json()["items"]
    [notification] = [i["id"] for i in items if i["title"] == title]
    return message_id, notification


def receipts(world: World, message_id: str) -> list[tuple[str, str, str]]:
    shown = world.gateway.get(
        f"/api/messages/{message_id}", headers={"Authorization": f"Bearer {SERVER_KEY}"}
    )
    return [(r["type"], r["code"], r["provider"]) for r in shown.json()["receipts"]]


SEEN = ("seen", "seen", "inbox")
READ = ("read", "read", "inbox")
CLICKED = ("clicked", "human", "inbox")


def test_reading_a_notification_records_the_message_read_once(world: World) -> None:
    """Given a delivered in-app message nobody has seen, when its user marks it read (twice),
    then its status lists one ``seen`` (reading implies it) and one ``read`` receipt from the
    inbox; its status stays ``delivered``."""
    message_id, notification = delivered(world, "ann", "Your order shipped")

    for _ in range(2):
        answer = world.gateway.post(
            "/api/notifications/mark-as-read", json={"ids": [notification]}, headers=user_headers("ann")
        )
        assert answer.status_code == 200

    assert receipts(world, message_id) == [SEEN, READ]
    assert world.service.get_status(message_id)["status"] == "delivered"


def test_the_inbox_showing_a_notification_records_the_message_seen_once(world: World) -> None:
    """Given a delivered in-app message, when the inbox reports it seen (twice) and its user
    then reads it, then its status lists one ``seen`` and one ``read`` receipt, in that order,
    and it stays ``delivered``."""
    message_id, notification = delivered(world, "ann", "Your order shipped")

    for action in ("seen", "seen", "mark-as-read"):
        answer = world.gateway.post(
            f"/api/notifications/{action}", json={"ids": [notification]}, headers=user_headers("ann")
        )
        assert answer.status_code == 200, answer.text

    assert receipts(world, message_id) == [SEEN, READ]
    assert world.service.get_status(message_id)["status"] == "delivered"


def test_following_a_notifications_action_records_one_click(world: World) -> None:
    """Given a delivered in-app message with an action, when its user follows it (twice), then
    its status lists it ``seen`` and one person's ``clicked`` receipt naming where the action
    led; the message stays ``delivered`` and the notification unread."""
    message_id, notification = delivered(world, "ann", "Invoice ready", action_url="/invoices/7")

    for _ in range(2):
        answer = world.gateway.post(
            "/api/notifications/clicked", json={"ids": [notification]}, headers=user_headers("ann")
        )
        assert answer.json() == {"clicked": 1}

    status = world.service.get_status(message_id)
    assert receipts(world, message_id) == [SEEN, CLICKED]
    assert status["receipts"][1]["detail"] == "/invoices/7"
    assert status["status"] == "delivered"
    unread = world.gateway.get("/api/notifications/unread-count", headers=user_headers("ann")).json()
    assert unread == {"count": 1}


def test_mark_all_read_records_each_unread_message_and_nothing_for_another_user(world: World) -> None:
    first, _ = delivered(world, "ann", "One")
    second, _ = delivered(world, "ann", "Two")
    others, _ = delivered(world, "bob", "Bob's")

    answer = world.gateway.post("/api/notifications/mark-all-as-read", headers=user_headers("ann"))

    assert answer.json() == {"updated": 2, "unreadCount": 0}
    assert receipts(world, first) == [SEEN, READ]
    assert receipts(world, second) == [SEEN, READ]
    assert receipts(world, others) == []


def test_a_notification_delivered_while_all_are_marked_read_stays_unseen_and_unread(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a notification delivered after "mark all as read" marked the others seen and
    before it marks them read (each statement sees what was committed before it), then it is
    neither seen nor read: no receipt, still counted unread; the others get both."""
    first, _ = delivered(world, "ann", "One")
    late: list[str] = []
    see = inbox._see

    def see_then_deliver(connection: Connection, which: Any) -> list[str | None]:
        seen = see(connection, which)
        if not late:
            late.append(world.service.send_in_app_notification(user_id="ann", title="Late", message="Hi"))
            assert final_status(world.service, late[0])["status"] == "delivered"  # its row committed
        return seen

    monkeypatch.setattr(inbox, "_see", see_then_deliver)
    answer = world.gateway.post("/api/notifications/mark-all-as-read", headers=user_headers("ann"))

    assert answer.json() == {"updated": 1, "unreadCount": 1}
    assert receipts(world, first) == [SEEN, READ]
    assert receipts(world, late[0]) == []


def test_a_read_is_forwarded_to_endpoints_subscribed_to_message_read(world: World) -> None:
    """Given an endpoint subscribed to ``message.read``, when a user reads a notification,
    then it receives one signed ``message.read`` event naming the message and the user."""
    with WebhookReceiver("whsec_" + "E" * 40) as hooks:
        _, secret = create_endpoint(world.settings, hooks.url, eventTypes=["message.read"])
        message_id, notification = delivered(world, "ann", "Invoice ready")

        world.gateway.post(
            "/api/notifications/mark-as-read", json={"ids": [notification]}, headers=user_headers("ann")
        )

        [delivery] = hooks.wait_for(1, timeout=20)
        Webhook(secret).verify(delivery.body, delivery.headers)
        body = json.loads(delivery.body)
        assert body["type"] == "message.read"
        assert body["data"] | {"occurredAt": "…"} == {
            "messageId": message_id,
            "channel": "in_app",
            "userId": "ann",
            "type": "read",
            "code": "read",
            "provider": "inbox",
            "detail": None,
            "occurredAt": "…",
        }


@pytest.mark.parametrize(
    ("action", "event"),
    [("seen", "message.seen"), ("clicked", "message.clicked")],
)
def test_seen_and_clicked_are_forwarded_to_endpoints_subscribed_to_them(
    world: World, action: str, event: str
) -> None:
    """Given an endpoint subscribed to ``message.seen`` or ``message.clicked``, when the inbox
    reports the notification seen or clicked, then the endpoint receives one signed event of
    that type naming the message and the user."""
    with WebhookReceiver("whsec_" + "E" * 40) as hooks:
        _, secret = create_endpoint(world.settings, hooks.url, eventTypes=[event])
        message_id, notification = delivered(
            world, "ann", "Invoice ready", action_url="https://app.example/i/7"
        )

        world.gateway.post(
            f"/api/notifications/{action}", json={"ids": [notification]}, headers=user_headers("ann")
        )

        [delivery] = hooks.wait_for(1, timeout=20)
        Webhook(secret).verify(delivery.body, delivery.headers)
        body = json.loads(delivery.body)
        assert body["type"] == event
        assert (body["data"]["messageId"], body["data"]["userId"], body["data"]["provider"]) == (
            message_id,
            "ann",
            "inbox",
        )
        assert body["data"]["detail"] == (None if action == "seen" else "https://app.example/i/7")
