"""Provider failover against real protocol peers: SMTP relays that refuse with 4xx or are not
there at all, Twilio-compatible servers answering 500, 429 or 400, with each provider's
health kept in the real Redis.

The first tests drive the channel's provider as the worker builds it from the environment
(``EMAIL_FALLBACK_PROVIDERS`` / ``SMS_FALLBACK_PROVIDERS``); the last go through the real
RabbitMQ, PostgreSQL and worker actors, and read what the message status says.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import EmailPayload, SmsPayload
from tests.conftest import Fleet, final_status
from tests.gateway.server import LiveServer, free_port
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.twilio_sink import TwilioSink
from tests.waiting import wait_until
from tests.workers.providers.messages import outgoing
from workers import email, sms

pytestmark = pytest.mark.anyio

PRIMARY_SID, PRIMARY_TOKEN = "AC" + "a" * 32, "primary-token"
BACKUP_SID, BACKUP_TOKEN = "AC" + "b" * 32, "backup-token"


def closed_port() -> int:
    """A loopback port nothing listens on: a relay that is down (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def relay(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": port}


@pytest.fixture
def relays() -> Iterator[tuple[SmtpSink, SmtpSink]]:
    with SmtpSink() as first, SmtpSink() as second:
        yield first, second


@pytest.fixture
def email_settings(make_settings: Callable[..., Settings], redis_url: str) -> Callable[..., Settings]:
    def make(primary_port: int, *fallbacks: dict[str, Any], **more: str) -> Settings:
        return make_settings(
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(primary_port),
            EMAIL_PROVIDER_NAME="relay-a",
            EMAIL_FALLBACK_PROVIDERS=json.dumps(list(fallbacks)),
            **more,
        )

    return make


def an_email(to: str = "ada@example.com") -> Any:
    return outgoing(EmailPayload(to=to, subject="Failover", text="Sent by whichever relay is up"))


def calls(channel: str, provider: str, outcome: str) -> float:
    labels = {"channel": channel, "provider": provider, "outcome": outcome}
    return REGISTRY.get_sample_value("kai_provider_calls_total", labels) or 0.0


async def test_a_relay_refusing_with_4xx_hands_the_attempt_to_the_next(
    relays: tuple[SmtpSink, SmtpSink], email_settings: Callable[..., Settings]
) -> None:
    """Given the first relay answering 451 to MAIL FROM, when an email is sent, then the same
    attempt goes to the second relay, which says so, with what failed before it."""
    first, second = relays
    first.fail_always(451, "4.3.0 try again later", stage="mail")
    provider = email.build_provider(email_settings(first.port, relay("relay-b", second.port)))
    try:
        result = await provider.send(an_email())
    finally:
        await provider.close()

    assert result.provider == "relay-b"
    assert result.note is not None and "relay-a: SMTP 451" in result.note
    assert len(second.received) == 1 and first.received == []


async def test_a_relay_that_is_down_hands_the_attempt_to_the_next(
    relays: tuple[SmtpSink, SmtpSink], email_settings: Callable[..., Settings]
) -> None:
    """Given a first relay nobody listens on, then the second relay takes the email."""
    _, second = relays
    provider = email.build_provider(email_settings(closed_port(), relay("relay-b", second.port)))
    try:
        result = await provider.send(an_email())
    finally:
        await provider.close()

    assert result.provider == "relay-b"
    assert result.note is not None and "relay-a: SMTP connection failed" in result.note
    assert len(second.received) == 1


async def test_one_refusing_and_one_down_fail_the_attempt_temporarily_naming_both(
    relays: tuple[SmtpSink, SmtpSink], email_settings: Callable[..., Settings]
) -> None:
    """Given a 4xx relay and a relay that is down, then the attempt fails temporarily (the
    pipeline retries it) with both providers' reasons, the last one's code."""
    first, _ = relays
    first.fail_always(421, "4.7.0 too busy", stage="mail")
    provider = email.build_provider(email_settings(first.port, relay("relay-b", closed_port())))
    try:
        with pytest.raises(TemporaryDeliveryError) as raised:
            await provider.send(an_email())
    finally:
        await provider.close()

    error = raised.value
    assert error.code == "smtp_connection" and error.provider == "relay-b"
    assert (
        error.message.startswith("relay-a: SMTP 421") and "; relay-b: SMTP connection failed" in error.message
    )


async def test_a_permanent_refusal_is_not_tried_elsewhere(
    relays: tuple[SmtpSink, SmtpSink], email_settings: Callable[..., Settings]
) -> None:
    """Given the first relay refusing the recipient with 550, then the email fails there:
    every relay would refuse a mailbox that does not exist, and the first relay's health is
    not held against it."""
    first, second = relays
    first.fail_always(550, "5.1.1 no such user", stage="rcpt")
    settings = email_settings(first.port, relay("relay-b", second.port), PROVIDER_BREAKER_THRESHOLD="1")
    provider = email.build_provider(settings)
    try:
        with pytest.raises(PermanentDeliveryError) as raised:
            await provider.send(an_email())
        first.clear_faults()
        again = await provider.send(an_email())
    finally:
        await provider.close()

    assert raised.value.code == "smtp_550" and raised.value.provider == "relay-a"
    assert second.received == []
    assert again.provider == "relay-a"  # its circuit stayed closed


async def test_a_failing_relay_is_passed_over_once_its_circuit_opens_then_probed(
    relays: tuple[SmtpSink, SmtpSink], email_settings: Callable[..., Settings]
) -> None:
    """Given PROVIDER_BREAKER_THRESHOLD=2, when the first relay keeps answering 4xx, then after
    two failures it is no longer asked (no more MAIL FROM reaches it); after the cooldown one
    probe goes to it, and its success makes it first again."""
    first, second = relays
    first.fail_always(451, "4.3.0 try again later", stage="mail")
    settings = email_settings(
        first.port,
        relay("relay-b", second.port),
        PROVIDER_BREAKER_THRESHOLD="2",
        PROVIDER_BREAKER_COOLDOWN="800",
    )
    provider = email.build_provider(settings)
    skipped_before = calls("email", "relay-a", "circuit_open")
    try:
        for _ in range(5):
            assert (await provider.send(an_email())).provider == "relay-b"
        assert first.connections == 1  # one pooled session, refused twice, then left alone
        assert calls("email", "relay-a", "circuit_open") - skipped_before == 3
        mail_commands = first.commands("mail")
        assert mail_commands == 2

        first.clear_faults()
        time.sleep(0.9)
        probe = await provider.send(an_email())
        after = await provider.send(an_email())
    finally:
        await provider.close()

    assert probe.provider == "relay-a" and after.provider == "relay-a"
    assert first.commands("mail") == mail_commands + 2
    assert len(second.received) == 5


async def test_every_circuit_open_fails_the_attempt_with_the_shortest_wait(
    relays: tuple[SmtpSink, SmtpSink], email_settings: Callable[..., Settings]
) -> None:
    """Given both relays failing until both circuits open, then an attempt asks neither and
    fails temporarily, with a retry hint no longer than the cooldown."""
    first, second = relays
    first.fail_always(451, stage="mail")
    second.fail_always(452, stage="mail")
    settings = email_settings(
        first.port,
        relay("relay-b", second.port),
        PROVIDER_BREAKER_THRESHOLD="1",
        PROVIDER_BREAKER_COOLDOWN="60000",
    )
    provider = email.build_provider(settings)
    try:
        with pytest.raises(TemporaryDeliveryError):
            await provider.send(an_email())
        asked = first.commands("mail") + second.commands("mail")
        with pytest.raises(TemporaryDeliveryError) as raised:
            await provider.send(an_email())
    finally:
        await provider.close()

    assert raised.value.code == "provider_circuit_open"
    assert raised.value.retry_after_ms is not None and 0 < raised.value.retry_after_ms <= 60000
    assert first.commands("mail") + second.commands("mail") == asked


@pytest.fixture
def twilios() -> Iterator[tuple[TwilioSink, TwilioSink]]:
    with TwilioSink(PRIMARY_SID, PRIMARY_TOKEN) as first, TwilioSink(BACKUP_SID, BACKUP_TOKEN) as second:
        yield first, second


@pytest.fixture
def sms_settings(
    make_settings: Callable[..., Settings], redis_url: str, twilios: tuple[TwilioSink, TwilioSink]
) -> Callable[..., Settings]:
    first, second = twilios

    def make(**more: str) -> Settings:
        backup = {
            "name": "twilio-backup",
            "accountSid": BACKUP_SID,
            "authToken": BACKUP_TOKEN,
            "phoneNumber": "+15005550009",
            "apiBase": second.base_url,
        }
        return make_settings(
            TWILIO_ACCOUNT_SID=PRIMARY_SID,
            TWILIO_AUTH_TOKEN=PRIMARY_TOKEN,
            TWILIO_PHONE_NUMBER="+15005550006",
            TWILIO_API_BASE=first.base_url,
            SMS_FALLBACK_PROVIDERS=json.dumps([backup]),
            **more,
        )

    return make


def an_sms() -> Any:
    return outgoing(SmsPayload(to="+14155550100", message="Your code is 123456"))


@pytest.mark.parametrize(
    ("status", "code"), [(500, 20500), (503, 20503), (429, 20429)], ids=["500", "503", "429"]
)
async def test_an_sms_provider_failing_temporarily_hands_the_attempt_to_the_next_account(
    twilios: tuple[TwilioSink, TwilioSink], sms_settings: Callable[..., Settings], status: int, code: int
) -> None:
    """Given the first Twilio account answering 5xx or 429, then the second account (its own
    credentials, its own number) sends the SMS in the same attempt."""
    first, second = twilios
    first.fail_always(status, code)
    provider = sms.build_provider(sms_settings())
    try:
        result = await provider.send(an_sms())
    finally:
        await provider.close()

    assert result.provider == "twilio-backup"
    [request] = second.requests
    assert request.account_sid == BACKUP_SID and request.from_ == "+15005550009"
    assert second.unauthorized == 0
    assert len(first.requests) == 0


async def test_an_invalid_number_is_refused_once_not_by_every_sms_provider(
    twilios: tuple[TwilioSink, TwilioSink], sms_settings: Callable[..., Settings]
) -> None:
    first, second = twilios
    first.fail_always(400, 21211, "The 'To' number is not a valid phone number.")
    provider = sms.build_provider(sms_settings())
    try:
        with pytest.raises(PermanentDeliveryError) as raised:
            await provider.send(an_sms())
    finally:
        await provider.close()

    assert raised.value.code == "twilio_21211" and raised.value.provider == "twilio"
    assert second.requests == []


def test_fallback_providers_are_read_from_json_with_clear_errors(
    make_settings: Callable[..., Settings],
) -> None:
    """Given EMAIL_FALLBACK_PROVIDERS, then relays come in order after EMAIL_HOST's, secure
    ones on port 465 by default; malformed lists, unknown fields, duplicate names and a
    fallback without a first provider are configuration errors that say what is wrong."""
    settings = make_settings(
        EMAIL_HOST="smtp.a.example",
        EMAIL_FALLBACK_PROVIDERS=json.dumps(
            [{"name": "b", "host": "smtp.b.example", "secure": True, "user": "kai", "password": "pw"}]
        ),
    )
    assert [(r.name, r.host, r.port, r.secure) for r in settings.smtp_relays] == [
        ("smtp.a.example", "smtp.a.example", 587, False),
        ("b", "smtp.b.example", 465, True),
    ]
    assert "pw" not in repr(settings.smtp_relays)

    cases = [
        ({"EMAIL_HOST": "a", "EMAIL_FALLBACK_PROVIDERS": "[{"}, "must be a JSON array"),
        ({"EMAIL_HOST": "a", "EMAIL_FALLBACK_PROVIDERS": '[{"name": "b"}]'}, "0.host: Field required"),
        ({"EMAIL_HOST": "a", "EMAIL_FALLBACK_PROVIDERS": '[{"name": "b", "host": "b", "tls": 1}]'}, "0.tls"),
        ({"EMAIL_HOST": "a", "EMAIL_FALLBACK_PROVIDERS": '[{"name": "a", "host": "b"}]'}, "used twice"),
        ({"EMAIL_FALLBACK_PROVIDERS": '[{"name": "b", "host": "b"}]'}, "needs EMAIL_HOST"),
        ({"SMS_FALLBACK_PROVIDERS": '[{"name": "x"}]'}, "accountSid: Field required"),
        (
            {
                "SMS_FALLBACK_PROVIDERS": json.dumps(
                    [{"name": "x", "accountSid": "AC1", "authToken": "t", "phoneNumber": "+1"}]
                )
            },
            "needs TWILIO_ACCOUNT_SID",
        ),
    ]
    for env, expected in cases:
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            make_settings(**env)


# -- through the fleet: what the status says -------------------------------------------------


def test_the_status_names_the_relay_that_sent_it_and_what_failed_before(
    relays: tuple[SmtpSink, SmtpSink],
    email_settings: Callable[..., Settings],
    fleet: Callable[..., Fleet],
) -> None:
    """Given relay-a refusing with 451 and relay-b up, when an email is sent through the
    fleet, then it is ``sent`` in one attempt, ``provider`` is relay-b and ``lastError`` says
    relay-a refused; a later email sent while relay-a is healthy again names relay-a."""
    first, second = relays
    first.fail_always(451, "4.3.0 try again later", stage="mail")
    settings = email_settings(first.port, relay("relay-b", second.port))
    fleet(settings, [Channel.EMAIL])
    service = NotificationService(settings)

    view = final_status(service, service.send_email(to="ada@example.com", subject="Hi", text="Hello"))
    assert (view["status"], view["attempts"], view["provider"]) == ("sent", 1, "relay-b")
    assert view["errorCode"] is None and "relay-a: SMTP 451" in view["lastError"]

    first.clear_faults()
    view = final_status(service, service.send_email(to="bob@example.com", subject="Hi", text="Hello"))
    assert (view["status"], view["provider"], view["lastError"]) == ("sent", "relay-a", None)


def test_with_every_provider_down_the_message_is_retried_and_sent_when_one_returns(
    relays: tuple[SmtpSink, SmtpSink],
    email_settings: Callable[..., Settings],
    fleet: Callable[..., Fleet],
) -> None:
    """Given relay-a refusing its next MAIL FROM and relay-b down, then the first
    attempt fails over and fails, the retry reaches relay-a once it accepts, and the status
    names it; nothing was sent twice."""
    first, _ = relays
    first.fail_next(421, "4.3.2 shutting down", times=1, stage="mail")
    settings = email_settings(first.port, relay("relay-b", closed_port()), EMAIL_MAX_RETRIES="4")
    fleet(settings, [Channel.EMAIL])
    service = NotificationService(settings)

    view = final_status(service, service.send_email(to="ada@example.com", subject="Hi", text="Hello"))

    assert (view["status"], view["provider"]) == ("sent", "relay-a")
    assert view["attempts"] == 2
    assert len(first.received) == 1


def test_an_sms_status_names_the_account_that_sent_it(
    twilios: tuple[TwilioSink, TwilioSink],
    sms_settings: Callable[..., Settings],
    fleet: Callable[..., Fleet],
) -> None:
    first, second = twilios
    first.fail_always(503, 20503)
    settings = sms_settings()
    fleet(settings, [Channel.SMS])
    service = NotificationService(settings)

    view = final_status(service, service.send_sms(to="+14155550100", message="Your code is 123456"))

    assert (view["status"], view["provider"], view["attempts"]) == ("sent", "twilio-backup", 1)
    assert view["providerMessageId"] == second.requests[0].sid


def test_status_callbacks_of_the_fallback_account_are_checked_with_its_own_token(
    twilios: tuple[TwilioSink, TwilioSink],
    sms_settings: Callable[..., Settings],
    fleet: Callable[..., Fleet],
) -> None:
    """Given an SMS sent by the fallback account, then its status callback is accepted when
    signed with that account's auth token and names the provider; signed with the first
    account's token it is refused (403)."""
    first, second = twilios
    first.fail_always(500, 20500)
    port = free_port()
    settings = sms_settings(PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    fleet(settings, [Channel.SMS])
    service = NotificationService(settings)
    with LiveServer(create_app(settings), port=port):
        message_id = service.send_sms(to="+14155550100", message="Your code is 123456")
        assert final_status(service, message_id)["provider"] == "twilio-backup"
        [request] = second.requests

        assert second.report(request, "delivered", signed_with=PRIMARY_TOKEN).status_code == 403
        assert second.report(request, "delivered").status_code == 204

    view = service.get_status(message_id)
    assert view["status"] == "delivered"
    assert [(r["type"], r["provider"]) for r in view["receipts"]] == [("delivered", "twilio-backup")]


def test_while_every_circuit_is_open_a_message_waits_without_spending_attempts(
    relays: tuple[SmtpSink, SmtpSink],
    email_settings: Callable[..., Settings],
    fleet: Callable[..., Fleet],
) -> None:
    """Given both relays refusing until their circuits open (threshold 1), then the message's
    next attempt asks neither: it is parked, its attempt given back, until the cooldown lets a
    probe through; once relay-a is back the probe sends it, two attempts in all."""
    first, second = relays
    first.fail_always(421, "4.3.2 down for maintenance", stage="mail")
    second.fail_always(421, "4.3.2 down for maintenance", stage="mail")
    settings = email_settings(
        first.port,
        relay("relay-b", second.port),
        PROVIDER_BREAKER_THRESHOLD="1",
        PROVIDER_BREAKER_COOLDOWN="1500",
    )
    fleet(settings, [Channel.EMAIL])
    service = NotificationService(settings)
    message_id = service.send_email(to="ada@example.com", subject="Hi", text="Hello")

    seen: dict[str, Any] = {}

    def resting() -> bool:
        seen.update(service.get_status(message_id))
        return seen["errorCode"] == "provider_circuit_open"

    wait_until(resting, timeout=10, message="the message never waited for the providers")
    assert (seen["status"], seen["attempts"]) == ("queued", 1)
    first.clear_faults()

    view = final_status(service, message_id)
    assert (view["status"], view["provider"], view["attempts"]) == ("sent", "relay-a", 2)
    assert first.commands("mail") + second.commands("mail") == 3  # attempt 1 (both), the probe
