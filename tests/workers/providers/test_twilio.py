"""The Twilio provider (the real twilio SDK) against a local Messages API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import SmsPayload
from tests.sinks.drip_server import DripServer
from tests.sinks.twilio_sink import TwilioSink
from tests.waiting import await_until
from tests.workers.providers.messages import outgoing
from workers.providers.base import Outgoing
from workers.providers.twilio import SMS_BODY_MAX_CHARS, TwilioProvider, classify

pytestmark = pytest.mark.anyio


ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"
FROM_NUMBER = "+15005550006"


def sms(to: str = "+14155550100", body: str = "Your code is 123456") -> Outgoing[SmsPayload]:
    return outgoing(SmsPayload(to=to, message=body))


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[TwilioSink]:
    with TwilioSink(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running


@pytest.fixture
async def make_provider(tmp_path: Path) -> AsyncIterator[Callable[..., TwilioProvider]]:
    made: list[TwilioProvider] = []

    def make(api_base: str, **env: str) -> TwilioProvider:
        settings = Settings.from_env(
            {
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_PHONE_NUMBER": FROM_NUMBER,
                "TWILIO_API_BASE": api_base,
                "SMS_TIMEOUT": "2000",
                "KAI_VAR_DIR": str(tmp_path),
                **env,
            }
        )
        provider = TwilioProvider(settings)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(sink: TwilioSink, make_provider: Callable[..., TwilioProvider]) -> TwilioProvider:
    return make_provider(sink.base_url)


async def test_an_sms_is_created_with_the_right_form_fields(
    sink: TwilioSink, provider: TwilioProvider
) -> None:
    """Given an SMS, when it is sent, then Twilio's API receives To, From and Body as form
    fields under our account with our credentials, and the result carries the message SID."""
    message = sms("+447700900123", "Café opens at 9 ✓")

    result = await provider.send(message)

    (request,) = sink.wait_for(1)
    assert (request.to, request.from_, request.body) == ("+447700900123", FROM_NUMBER, "Café opens at 9 ✓")
    assert request.account_sid == ACCOUNT_SID
    assert result.provider_message_id == request.sid
    assert result.provider_message_id is not None and result.provider_message_id.startswith("SM")
    assert result.delivered is False
    assert sink.unauthorized == 0


@pytest.mark.parametrize(
    ("status", "code", "error_code"),
    [
        (500, 20500, "twilio_20500"),
        (503, 20503, "twilio_20503"),
        (429, 20429, "twilio_20429"),
        (400, 20429, "twilio_20429"),  # Twilio's rate-limit code wins over the status
    ],
)
async def test_server_errors_and_rate_limits_are_temporary(
    sink: TwilioSink, provider: TwilioProvider, status: int, code: int, error_code: str
) -> None:
    """Given Twilio answering ``status`` with error ``code``, when an SMS is sent, then the
    failure is temporary and names Twilio's code."""
    sink.fail_next(status, code, "try again later")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(sms())

    assert caught.value.code == error_code
    assert "try again later" in caught.value.message
    assert sink.requests == []


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (21211, "The 'To' number +1555 is not a valid phone number."),
        (21610, "Attempt to send to unsubscribed recipient"),
        (21614, "'To' number is not a valid mobile number"),
    ],
)
async def test_request_errors_are_permanent(
    sink: TwilioSink, provider: TwilioProvider, code: int, text: str
) -> None:
    """Given Twilio refusing the request with 400 and ``code``, when an SMS is sent, then the
    failure is permanent, with Twilio's code and message."""
    sink.fail_next(400, code, text)

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(sms())

    assert caught.value.code == f"twilio_{code}"
    assert text in caught.value.message


async def test_a_failure_then_success_on_retry(sink: TwilioSink, provider: TwilioProvider) -> None:
    """Given one 500, when the same SMS is sent twice, then the first attempt fails
    temporarily and the second is created."""
    message = sms()
    sink.fail_next(500, 20500)

    with pytest.raises(TemporaryDeliveryError):
        await provider.send(message)
    await provider.send(message)

    assert len(sink.wait_for(1)) == 1


async def test_wrong_credentials_are_temporary(
    sink: TwilioSink, make_provider: Callable[..., TwilioProvider]
) -> None:
    """Given a wrong auth token, when an SMS is sent, then Twilio answers 401/20003 and the
    failure is temporary (the configuration is wrong, not the message)."""
    provider = make_provider(sink.base_url, TWILIO_AUTH_TOKEN="wrong")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(sms())

    assert caught.value.code == "twilio_20003"
    assert sink.unauthorized == 1


async def test_a_slow_api_times_out(sink: TwilioSink, make_provider: Callable[..., TwilioProvider]) -> None:
    """Given an API that takes two seconds, when an SMS is sent with a 300 ms timeout, then it
    fails temporarily as a timeout instead of holding the worker thread."""
    provider = make_provider(sink.base_url, SMS_TIMEOUT="300")
    sink.delay = 2.0

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(sms())

    assert caught.value.code == "twilio_timeout"


async def test_an_api_dripping_its_headers_is_cut_off_at_the_deadline(
    make_provider: Callable[..., TwilioProvider],
) -> None:
    """Given an API that writes its status line and headers one byte at a time (each read
    quick, the whole answer seconds), when an SMS is sent with a 300 ms timeout, then it
    fails as a timeout and the connection is dropped before the headers are complete."""
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Padding: " + b"p" * 80 + b"\r\n\r\n{}"
    with DripServer(answer, interval=0.05) as peer:
        provider = make_provider(f"http://127.0.0.1:{peer.port}", SMS_TIMEOUT="300")

        with pytest.raises(TemporaryDeliveryError) as caught:
            await provider.send(sms())

        assert caught.value.code == "twilio_timeout"
        await await_until(lambda: peer.connections[0].abandoned, message="the connection was kept open")


async def test_connection_refused_is_temporary(make_provider: Callable[..., TwilioProvider]) -> None:
    """Given nothing listening at the API base, when an SMS is sent, then it fails
    temporarily as a connection failure."""
    provider = make_provider(f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(sms())

    assert caught.value.code == "twilio_connection"


async def test_a_body_over_the_limit_fails_permanently_without_a_request(
    sink: TwilioSink, provider: TwilioProvider
) -> None:
    """Given a body longer than Twilio accepts, when sent, then it fails permanently and
    Twilio is not called."""
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(sms(body="x" * (SMS_BODY_MAX_CHARS + 1)))

    assert caught.value.code == "sms_too_long"
    assert sink.requests == [] and sink.unauthorized == 0


async def test_messages_in_flight_together(sink: TwilioSink, provider: TwilioProvider) -> None:
    """Given eight SMS in flight at a time, five times over, then all forty are created with
    distinct SIDs."""
    results = [r for _ in range(5) for r in await asyncio.gather(*(provider.send(sms()) for _ in range(8)))]

    assert len(sink.wait_for(40)) == 40
    assert len({r.provider_message_id for r in results}) == 40


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER"])
async def test_missing_credentials_are_a_configuration_error(missing: str) -> None:
    """Given a Twilio setting left empty, when the provider is built, then ConfigError names it."""
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": FROM_NUMBER,
    }
    env[missing] = ""

    with pytest.raises(ConfigError, match=missing):
        TwilioProvider(Settings.from_env(env))


async def test_twilio_edge_in_the_environment_does_not_redirect_requests(
    sink: TwilioSink, provider: TwilioProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given TWILIO_EDGE/TWILIO_REGION in the process environment (which the SDK reads on its
    own), when an SMS is sent, then it still goes to TWILIO_API_BASE."""
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")

    await provider.send(sms())

    assert len(sink.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("error", "kind", "error_code"),
    [
        (
            TwilioRestException(502, "/Messages.json", "Bad Gateway", 502, "POST"),
            TemporaryDeliveryError,
            "twilio_502",
        ),
        (
            TwilioRestException(400, "/Messages.json", "invalid", 21211, "POST"),
            PermanentDeliveryError,
            "twilio_21211",
        ),
        (
            TwilioRestException(404, "/Messages.json", "no account", 20404, "POST"),
            PermanentDeliveryError,
            "twilio_20404",
        ),
        (
            TwilioServiceException(
                "https://www.twilio.com/docs/errors/20429", "Too Many Requests", 429, 20429
            ),
            TemporaryDeliveryError,
            "twilio_20429",
        ),
        (
            TwilioServiceException("https://www.twilio.com/docs/errors/21211", "Invalid 'To'", 400, 21211),
            PermanentDeliveryError,
            "twilio_21211",
        ),
        (aiohttp.ClientOSError(111, "Connection refused"), TemporaryDeliveryError, "twilio_connection"),
        (TimeoutError(), TemporaryDeliveryError, "twilio_timeout"),
        (aiohttp.ServerDisconnectedError(), TemporaryDeliveryError, "twilio_connection"),
        (ValueError("Expecting value: line 1 column 1"), TemporaryDeliveryError, "twilio_error"),
    ],
)
async def test_classify_maps_sdk_errors(
    error: BaseException, kind: type[DeliveryError], error_code: str
) -> None:
    """Given an SDK or transport failure, including the newer RFC 9457 error shape the SDK
    raises as a separate exception class, then it maps to the right delivery error."""
    mapped = classify(error)

    assert type(mapped) is kind
    assert mapped.code == error_code
