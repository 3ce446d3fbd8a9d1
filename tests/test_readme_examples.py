"""The README's Python examples, run as written against the real services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import Fleet, Queues, final_status
from tests.gateway.server import LiveServer, free_port
from tests.readme import example_after
from tests.sinks.twilio_sink import TwilioSink


def test_send_many_example(settings: Settings, queues: Queues) -> None:
    """The send_many example: two items queued, the bad phone number answered alone."""
    namespace: dict[str, Any] = {"notification_service": NotificationService(settings)}

    exec(example_after("Many messages at once go through `send_many`"), namespace)

    results = namespace["results"]
    assert [sorted(r) for r in results] == [["id", "status"], ["error"], ["id", "status"]]
    assert results[1]["error"]["code"] == "validation_error"
    assert results[1]["error"]["details"][0]["field"] == "to"
    assert queues.depths(["email", "sms", "in_app"]) == {"email": 1, "sms": 0, "in_app": 1}


def test_twilio_receipt_example(make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]) -> None:
    """The receipts example, posted as written to a gateway whose SMS went to a
    Twilio-compatible peer: 204, and the message is then delivered."""
    port = free_port()
    sid, token = "AC" + "5" * 32, "readme-twilio-token"
    with TwilioSink(sid, token) as twilio:
        settings = make_settings(
            TWILIO_ACCOUNT_SID=sid,
            TWILIO_AUTH_TOKEN=token,
            TWILIO_PHONE_NUMBER="+15005550006",
            TWILIO_API_BASE=twilio.base_url,
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        )
        fleet(settings, [Channel.SMS])
        service = NotificationService(settings)
        message_id = service.send_sms(to="+14155550100", message="hello")
        final_status(service, message_id)
        with LiveServer(create_app(settings), port=port):
            namespace: dict[str, Any] = {
                "public_base_url": settings.public_base_url,
                "message_id": message_id,
                "account_sid": sid,
                "auth_token": token,
                "twilio_sid": twilio.wait_for(1)[0].sid,
            }
            exec(example_after("To check a deployment end to end, post what Twilio would"), namespace)

    assert namespace["answer"].status_code == 204
    assert service.get_status(message_id)["status"] == "delivered"
