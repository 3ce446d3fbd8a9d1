"""Twilio's status callbacks, end to end: an SMS goes through the real RabbitMQ and the SMS
actor to the Twilio-compatible sink with a StatusCallback under PUBLIC_BASE_URL; the sink
then posts callbacks to the real gateway as Twilio does, signed with the auth token. Valid
ones move the status forward and are listed in order; forged, tampered or replayed ones
change nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import MessageReceipt
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Fleet, final_status
from tests.gateway.server import LiveServer, free_port
from tests.sinks.twilio_sink import SmsRequest, TwilioSink
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until
from tests.webhook_events import create_endpoint

TWILIO_SID = "AC" + "7" * 32
TWILIO_TOKEN = "twilio-receipts-token"


@dataclass
class World:
    settings: Settings
    service: NotificationService
    twilio: TwilioSink
    gateway: str


def twilio_settings(make_settings: Callable[..., Settings], twilio: TwilioSink, **more: str) -> Settings:
    """Settings sending SMS through ``twilio`` with its account and token."""
    return make_settings(
        TWILIO_ACCOUNT_SID=twilio.account_sid,
        TWILIO_AUTH_TOKEN=twilio.auth_token,
        TWILIO_PHONE_NUMBER="+15005550006",
        TWILIO_API_BASE=twilio.base_url,
        **more,
    )


@pytest.fixture
def world(make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]) -> Iterator[World]:
    port = free_port()
    with TwilioSink(TWILIO_SID, TWILIO_TOKEN) as twilio:
        settings = twilio_settings(make_settings, twilio, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}/")
        fleet(settings, [Channel.SMS, Channel.WEBHOOK])
        with LiveServer(create_app(settings), port=port) as server:
            yield World(settings, NotificationService(settings), twilio, server.url)


def sent_sms(world: World, to: str = "+14155550100") -> tuple[str, SmsRequest]:
    message_id = world.service.send_sms(to=to, message="Your code is 123456")
    assert final_status(world.service, message_id)["status"] == "sent"
    [request] = [r for r in world.twilio.wait_for(1) if r.to == to]
    return message_id, request


def receipts_of(world: World, message_id: str) -> int:
    with system_scope(world.settings.database_url) as session:
        query = select(func.count()).where(MessageReceipt.message_id == message_id)
        return int(session.scalar(query) or 0)


def test_each_sms_names_its_own_status_callback_under_the_public_base_url(world: World) -> None:
    message_id, request = sent_sms(world)
    assert request.form["StatusCallback"] == f"{world.gateway}/receipts/twilio/{message_id}"


def test_delivered_moves_a_sent_sms_to_delivered_and_is_listed(world: World) -> None:
    """Given a sent SMS, when Twilio reports ``sent`` then ``delivered``, then the message is
    ``delivered`` and its receipts list both, in order, with Twilio's words."""
    message_id, request = sent_sms(world)

    assert world.twilio.report(request, "sent").status_code == 204
    assert world.twilio.report(request, "delivered").status_code == 204

    view = world.service.get_status(message_id)
    assert view["status"] == "delivered" and view["deliveredAt"] is not None
    assert [(r["type"], r["code"], r["provider"]) for r in view["receipts"]] == [
        ("accepted", "sent", "twilio"),
        ("delivered", "delivered", "twilio"),
    ]


def test_undelivered_fails_the_message_and_a_late_delivered_does_not_undo_it(world: World) -> None:
    message_id, request = sent_sms(world)

    assert world.twilio.report(request, "undelivered", error_code=30003).status_code == 204
    assert world.twilio.report(request, "delivered").status_code == 204

    view = world.service.get_status(message_id)
    assert (view["status"], view["errorCode"]) == ("failed", "twilio_30003")
    assert "undelivered" in view["lastError"] and "30003" in view["lastError"]
    assert [(r["type"], r["code"]) for r in view["receipts"]] == [
        ("undelivered", "undelivered 30003"),
        ("delivered", "delivered"),
    ]


def test_a_replayed_callback_is_recorded_once(world: World) -> None:
    message_id, request = sent_sms(world)

    for _ in range(3):
        assert world.twilio.report(request, "delivered").status_code == 204

    assert receipts_of(world, message_id) == 1
    assert world.service.get_status(message_id)["status"] == "delivered"


@pytest.mark.parametrize(
    "how",
    [
        {"signed_with": "not-the-auth-token"},
        {"tamper": {"MessageStatus": "undelivered"}},
        {"tamper": {"AccountSid": "AC" + "0" * 32}},
    ],
    ids=["signed with another token", "status changed after signing", "another account"],
)
def test_a_forged_callback_is_refused_and_changes_nothing(world: World, how: dict[str, object]) -> None:
    message_id, request = sent_sms(world)

    refused = world.twilio.report(request, "delivered", **how)  # type: ignore[arg-type]

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert receipts_of(world, message_id) == 0
    assert world.service.get_status(message_id)["status"] == "sent"


def test_a_callback_for_a_message_that_is_not_an_sms_is_not_found(world: World) -> None:
    _, request = sent_sms(world)
    other = world.service.send_in_app_notification(user_id="u1", title="t", message="m")
    aimed = SmsRequest(
        request.sid,
        request.account_sid,
        request.to,
        request.from_,
        request.body,
        {**request.form, "StatusCallback": f"{world.gateway}/receipts/twilio/{other}"},
    )

    assert world.twilio.report(aimed, "delivered").status_code == 404
    assert receipts_of(world, other) == 0


def test_a_body_that_is_not_a_form_is_refused(world: World) -> None:
    message_id, _ = sent_sms(world)
    answer = httpx.post(f"{world.gateway}/receipts/twilio/{message_id}", json={"MessageStatus": "delivered"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_without_a_public_base_url_no_callback_is_asked_for_or_taken(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    with TwilioSink(TWILIO_SID, TWILIO_TOKEN) as twilio:
        settings = twilio_settings(make_settings, twilio)
        fleet(settings, [Channel.SMS])
        service = NotificationService(settings)
        message_id = service.send_sms(to="+14155550100", message="hello")
        final_status(service, message_id)
        assert "StatusCallback" not in twilio.wait_for(1)[0].form
        with LiveServer(create_app(settings)) as server:
            answer = httpx.post(
                f"{server.url}/receipts/twilio/{message_id}",
                data={"MessageStatus": "delivered"},
                headers={"Authorization": f"Bearer {SERVER_KEY}"},
            )
    assert answer.status_code == 404


def test_the_status_over_http_lists_the_receipts(world: World) -> None:
    message_id, request = sent_sms(world)
    world.twilio.report(request, "delivered")
    wait_until(lambda: receipts_of(world, message_id) == 1, timeout=5, message="no receipt")
    with httpx.Client(base_url=world.gateway, headers={"Authorization": f"Bearer {SERVER_KEY}"}) as client:
        shown = client.get(f"/api/messages/{message_id}").json()
    assert [r["type"] for r in shown["receipts"]] == ["delivered"]


def test_receipts_are_forwarded_to_endpoints_subscribed_to_message_events(world: World) -> None:
    """Given an endpoint subscribed to message.* and one to order.*, when Twilio reports an
    SMS undelivered (and then replays it), then the first receives one signed
    ``message.undelivered`` event naming the message and Twilio's code; the second nothing."""
    with WebhookReceiver("whsec_" + "C" * 40) as hooks, WebhookReceiver("whsec_" + "D" * 40) as orders:
        _, secret = create_endpoint(world.settings, hooks.url, eventTypes=["message.*"])
        create_endpoint(world.settings, orders.url, eventTypes=["order.*"])
        message_id, request = sent_sms(world)

        for _ in range(2):
            assert world.twilio.report(request, "undelivered", error_code=30005).status_code == 204

        [delivery] = hooks.wait_for(1, timeout=20)
        Webhook(secret).verify(delivery.body, delivery.headers)
        body = json.loads(delivery.body)
        assert body["type"] == "message.undelivered"
        assert body["data"] | {"occurredAt": "…"} == {
            "messageId": message_id,
            "channel": "sms",
            "userId": None,
            "type": "undelivered",
            "code": "undelivered 30005",
            "provider": "twilio",
            "detail": "Twilio error 30005",
            "occurredAt": "…",
        }
        forwarded = final_status(world.service, delivery.headers["webhook-id"])
        assert forwarded["status"] == "delivered"
        assert len(hooks.deliveries) == 1 and orders.deliveries == []
