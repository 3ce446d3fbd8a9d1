"""The README's Python examples, run as written against the real services."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from typing import Any

from dotenv import dotenv_values

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import Fleet, Queues, final_status
from tests.gateway.server import LiveServer, free_port
from tests.readme import example_after
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.twilio_sink import TwilioSink
from tests.test_receipts import twilio_settings


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
        settings = twilio_settings(make_settings, twilio, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
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


def test_one_click_unsubscribe_example(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], smtp: SmtpSink
) -> None:
    """The unsubscribe example, run as written on an email the SMTP peer received: 200, and
    the user's email is then off."""
    port = free_port()
    settings = make_settings(
        EMAIL_HOST=smtp.host,
        EMAIL_PORT=str(smtp.port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        UNSUBSCRIBE_SECRET="readme-example-secret-long-enough-for-hs256",
    )
    fleet(settings, [Channel.EMAIL])
    service = NotificationService(settings)
    final_status(service, service.send_email(to="dee@example.com", subject="Hi", text="Hello", user_id="dee"))
    with LiveServer(create_app(settings), port=port):
        namespace: dict[str, Any] = {"raw_email": smtp.wait_for(1) and smtp.received[0].raw}
        exec(example_after("What a mailbox provider does with the mail it received"), namespace)

    assert namespace["answer"].status_code == 200
    later = service.send_email(to="dee@example.com", subject="Again", text="Hello", user_id="dee")
    assert final_status(service, later)["status"] == "skipped"


def test_provider_failover_example(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """The failover configuration, read as the .env file it is with its two relays replaced
    by local SMTP peers (relay-a answering 421), then the status example run as written:
    relay-b sent it, and the status says relay-a refused."""
    with SmtpSink() as relay_a, SmtpSink() as relay_b:
        relay_a.fail_always(421, "4.3.2 try again later", stage="mail")
        documented = dotenv_values(
            stream=io.StringIO(example_after("name the first (`EMAIL_HOST`…", "dotenv"))
        )
        fallbacks = json.loads(documented["EMAIL_FALLBACK_PROVIDERS"] or "")
        assert [f["name"] for f in fallbacks] == ["relay-b"]
        fallbacks[0].update(host=relay_b.host, port=relay_b.port, user=None, password=None)
        env = {name: value or "" for name, value in documented.items()}
        env.update(
            EMAIL_HOST=relay_a.host,
            EMAIL_PORT=str(relay_a.port),
            EMAIL_FALLBACK_PROVIDERS=json.dumps(fallbacks),
            TWILIO_ACCOUNT_SID="AC" + "6" * 32,
            TWILIO_AUTH_TOKEN="readme-token",
            TWILIO_PHONE_NUMBER="+15005550006",
        )
        settings = make_settings(**env)
        assert [a.name for a in settings.twilio_accounts] == ["twilio", "twilio-eu"]
        fleet(settings, [Channel.EMAIL])
        namespace: dict[str, Any] = {"notification_service": NotificationService(settings)}
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            exec(example_after("The status says which provider took the message"), namespace)

    assert printed.getvalue().strip() == "sent relay-b failed over: relay-a: SMTP 421 4.3.2 try again later"
    assert len(relay_b.received) == 1
