"""The generic HTTP SMS provider against a JSON SMS gateway on loopback: what it sends, how
each answer is read, and its place as the SMS channel's second provider."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest

from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import SmsPayload
from shared.provider_settings import HttpSmsGateway
from tests.conftest import Fleet, final_status
from tests.sinks.sms_gateway import SmsGateway
from tests.sinks.twilio_sink import TwilioSink
from tests.workers.providers.messages import outgoing
from workers.providers.http_sms import HttpSmsProvider

pytestmark = pytest.mark.anyio

TOKEN = "gateway-token"
TWILIO_SID, TWILIO_TOKEN = "AC" + "e" * 32, "twilio-token"


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    with SmsGateway(TOKEN) as peer:
        yield peer


def provider_for(settings: Settings, url: str, token: str = TOKEN) -> HttpSmsProvider:
    return HttpSmsProvider(settings, HttpSmsGateway(name="gateway", url=url, token=token, sender="KAI"))


def an_sms(message_id: str | None = None) -> object:
    return outgoing(SmsPayload(to="+14155550100", message="Your code is 123456"), message_id)


async def test_a_message_is_posted_as_json_with_its_id_as_idempotency_key(
    settings: Settings, gateway: SmsGateway
) -> None:
    provider = provider_for(settings, gateway.url)
    try:
        message = an_sms()
        result = await provider.send(message)  # type: ignore[arg-type]
        again = await provider.send(message)  # type: ignore[arg-type]
    finally:
        await provider.close()

    [request] = gateway.requests
    assert (request.to, request.sender, request.body) == ("+14155550100", "KAI", "Your code is 123456")
    assert request.reference == request.idempotency_key == message.id  # type: ignore[attr-defined]
    assert result.provider_message_id == request.id and not result.delivered
    assert again.provider_message_id == request.id  # the gateway dropped the repeat


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after_ms"),
    [
        (503, {"Retry-After": "7"}, TemporaryDeliveryError, 7000),
        (429, {}, TemporaryDeliveryError, None),
        (500, {}, TemporaryDeliveryError, None),
        (400, {}, PermanentDeliveryError, None),
        (422, {}, PermanentDeliveryError, None),
    ],
)
async def test_each_refusal_is_read_as_temporary_or_permanent(
    settings: Settings,
    gateway: SmsGateway,
    status: int,
    headers: dict[str, str],
    kind: type,
    retry_after_ms: int | None,
) -> None:
    gateway.fail_next(status, headers=headers)
    provider = provider_for(settings, gateway.url)
    try:
        with pytest.raises(kind) as raised:
            await provider.send(an_sms())  # type: ignore[arg-type]
    finally:
        await provider.close()

    assert raised.value.code == f"sms_http_{status}"
    assert getattr(raised.value, "retry_after_ms", None) == retry_after_ms
    assert gateway.requests == []


async def test_a_wrong_token_waits_for_a_fix_instead_of_failing_the_message(
    settings: Settings, gateway: SmsGateway
) -> None:
    provider = provider_for(settings, gateway.url, token="stale")
    try:
        with pytest.raises(TemporaryDeliveryError) as raised:
            await provider.send(an_sms())  # type: ignore[arg-type]
    finally:
        await provider.close()
    assert raised.value.code == "sms_http_401" and gateway.unauthorized == 1


async def test_a_gateway_down_or_silent_is_a_temporary_failure(
    make_settings: Callable[..., Settings], gateway: SmsGateway
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings = make_settings(SMS_TIMEOUT="300")
    gateway.delay = 1.0
    for url, code in (
        (f"http://127.0.0.1:{closed}/v1/messages", "sms_http_connection"),
        (gateway.url, "sms_http_timeout"),
    ):
        provider = provider_for(settings, url)
        try:
            with pytest.raises(TemporaryDeliveryError) as raised:
                await provider.send(an_sms())  # type: ignore[arg-type]
        finally:
            await provider.close()
        assert raised.value.code == code


def test_http_entries_are_read_beside_twilio_ones(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        TWILIO_ACCOUNT_SID=TWILIO_SID,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        SMS_FALLBACK_PROVIDERS=json.dumps(
            [
                {
                    "name": "gateway",
                    "kind": "http",
                    "url": "https://sms.example/v1/messages",
                    "token": "t",
                    "from": "KAI",
                }
            ]
        ),
    )
    [twilio, http] = settings.sms_providers
    assert twilio.name == "twilio"
    assert http == HttpSmsGateway(
        name="gateway", url="https://sms.example/v1/messages", token="t", sender="KAI"
    )
    assert [a.name for a in settings.twilio_accounts] == ["twilio"]
    for entry, problem in (
        ({"name": "g", "kind": "http", "token": "t", "from": "K"}, "url"),
        ({"name": "g", "kind": "http", "url": "ftp://x", "token": "t", "from": "K"}, "url"),
        ({"name": "g", "kind": "carrier-pigeon"}, "kind"),
    ):
        with pytest.raises(ConfigError, match=problem):
            make_settings(
                TWILIO_ACCOUNT_SID=TWILIO_SID,
                TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                SMS_FALLBACK_PROVIDERS=json.dumps([entry]),
            )


def test_twilio_failing_hands_the_sms_to_the_http_gateway_through_the_fleet(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], gateway: SmsGateway
) -> None:
    """Given Twilio answering 500 and an HTTP gateway as the second SMS provider, then the
    SMS is sent by the gateway in the first attempt, and the status names it."""
    with TwilioSink(TWILIO_SID, TWILIO_TOKEN) as twilio:
        twilio.fail_next(500, 20500, times=None)
        settings = make_settings(
            TWILIO_ACCOUNT_SID=TWILIO_SID,
            TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
            TWILIO_PHONE_NUMBER="+15005550006",
            TWILIO_API_BASE=twilio.base_url,
            SMS_FALLBACK_PROVIDERS=json.dumps(
                [{"name": "gateway", "kind": "http", "url": gateway.url, "token": TOKEN, "from": "KAI"}]
            ),
        )
        fleet(settings, [Channel.SMS])
        service = NotificationService(settings)

        view = final_status(service, service.send_sms(to="+14155550100", message="Your code is 123456"))

    assert (view["status"], view["provider"], view["attempts"]) == ("sent", "gateway", 1)
    [request] = gateway.requests
    assert view["providerMessageId"] == request.id and request.reference == view["id"]
    assert "twilio: Twilio HTTP 500" in view["lastError"]
