"""The webhook provider against a receiver that verifies Standard Webhooks signatures."""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared import netguard
from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from tests.sinks.drip_server import DripServer
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import await_until
from tests.workers.providers.messages import outgoing
from workers.providers.base import Exchange, FailedDispatch, Outgoing, SendResult
from workers.providers.http import (
    REDACTED,
    RESPONSE_BODY_MAX_BYTES,
    RETRY_AFTER_MAX_MS,
    WebhookCall,
    WebhookProvider,
    parse_retry_after,
    redact_headers,
)

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

EVENT = {
    "type": "invoice.paid",
    "data": {"id": "inv_42", "amount": 1999, "currency": "EUR", "note": "merci ✓"},
}


def webhook(url: str, payload: Any = None, *, headers: dict[str, str] | None = None) -> Outgoing[WebhookCall]:
    return outgoing(WebhookCall(url=url, body=EVENT if payload is None else payload, headers=headers or {}))


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


@pytest.fixture
async def make_provider(tmp_path: Path) -> AsyncIterator[Callable[..., WebhookProvider]]:
    made: list[WebhookProvider] = []

    def make(**env: str) -> WebhookProvider:
        settings = Settings.from_env(
            {"WEBHOOK_SECRET": SECRET, "WEBHOOK_TIMEOUT": "2000", "KAI_VAR_DIR": str(tmp_path), **env}
        )
        provider = WebhookProvider(settings)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., WebhookProvider]) -> WebhookProvider:
    return make_provider()


def failed(outcome: SendResult | FailedDispatch) -> tuple[DeliveryError, Exchange]:
    """The error and the exchange of a failed attempt: a webhook failure must carry what went
    over the wire, for the delivery log."""
    assert isinstance(outcome, FailedDispatch), f"expected a failure, got {outcome}"
    assert outcome.exchange is not None, "a webhook failure must carry its exchange"
    return outcome.error, outcome.exchange


def exchange_of(result: SendResult) -> Exchange:
    assert result.exchange is not None, "a webhook attempt must carry its exchange"
    return result.exchange


# -- success -----------------------------------------------------------------------------------


async def test_a_webhook_arrives_signed_and_verifies(
    receiver: WebhookReceiver, provider: WebhookProvider
) -> None:
    """Given a payload, when it is posted, then the receiver gets the exact JSON with a
    signature that verifies with the shared secret, and the result counts as delivered."""
    message = webhook(receiver.url)

    result = await provider.send(message)

    (delivery,) = receiver.wait_for(1)
    assert delivery.verified, delivery.error
    assert delivery.json == EVENT
    assert (
        delivery.body
        == b'{"type":"invoice.paid","data":{"id":"inv_42","amount":1999,"currency":"EUR",'
        + ('"note":"merci ✓"}}'.encode())
    )
    assert delivery.headers["webhook-id"] == message.id
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["user-agent"] == "KAI-Messaging-Webhooks/1.0"
    assert result.delivered is True
    assert result.provider_message_id == "200"
    sent = exchange_of(result)
    assert sent.status == 200
    assert sent.response_excerpt == '{"ok":true}'
    assert sent.response_truncated is False
    assert isinstance(sent.duration_ms, int)
    assert sent.request_headers["webhook-signature"] == REDACTED
    assert sent.request_headers["webhook-id"] == message.id
    assert sent.request_body is not None and sent.request_body.encode() == delivery.body
    assert sent.response_headers is not None
    assert sent.response_headers["content-type"] == "application/json"


@pytest.mark.parametrize("payload", [{"a": 1}, [1, "two", {"three": None}], {}, []])
async def test_any_json_object_or_array_is_sent(
    receiver: WebhookReceiver, provider: WebhookProvider, payload: Any
) -> None:
    """Given a JSON object or array payload, when posted, then it arrives unchanged and signed."""
    await provider.send(webhook(receiver.url, payload))

    (delivery,) = receiver.wait_for(1)
    assert delivery.verified and delivery.json == payload


async def test_custom_headers_are_sent_but_cannot_override_ours(
    receiver: WebhookReceiver, provider: WebhookProvider
) -> None:
    """Given custom headers including forged signature and content-type, when posted, then the
    custom ones arrive, ours win, the signature still verifies and secrets are redacted."""
    message = webhook(
        receiver.url,
        headers={
            "Authorization": "Bearer customer-token",
            "X-Tenant": "acme",
            "webhook-signature": "v1,forged",
            "Content-Type": "text/plain",
        },
    )

    result = await provider.send(message)

    (delivery,) = receiver.wait_for(1)
    assert delivery.verified, delivery.error
    assert delivery.headers["authorization"] == "Bearer customer-token"
    assert delivery.headers["x-tenant"] == "acme"
    assert delivery.headers["content-type"] == "application/json"
    assert "forged" not in delivery.headers["webhook-signature"]
    assert exchange_of(result).request_headers["authorization"] == REDACTED
    assert exchange_of(result).request_headers["x-tenant"] == "acme"


async def test_a_retry_carries_the_same_webhook_id(
    receiver: WebhookReceiver, provider: WebhookProvider
) -> None:
    """Given a first attempt answered 500, when the message is sent again, then both requests
    carry the same webhook-id, so the receiver can tell a retry from a new event."""
    message = webhook(receiver.url)
    receiver.respond_next(500)

    with pytest.raises(TemporaryDeliveryError):
        await provider.send(message)
    await provider.send(message)

    assert receiver.count(message.id) == 2
    assert all(d.verified for d in receiver.wait_for(2))


# -- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, TemporaryDeliveryError),
        (502, TemporaryDeliveryError),
        (503, TemporaryDeliveryError),
        (429, TemporaryDeliveryError),
        (408, TemporaryDeliveryError),
        (400, PermanentDeliveryError),
        (401, PermanentDeliveryError),
        (404, PermanentDeliveryError),
        (410, PermanentDeliveryError),
        (422, PermanentDeliveryError),
    ],
)
async def test_statuses_are_classified(
    receiver: WebhookReceiver, provider: WebhookProvider, status: int, kind: type[DeliveryError]
) -> None:
    """Given a receiver answering ``status``, when posted, then 408/429/5xx fail temporarily
    and other 4xx permanently, with ``http_<status>`` and the attempt's details attached."""
    receiver.respond_next(status, body=b'{"error":"nope"}')

    error, sent = failed(await provider.post(webhook(receiver.url)))

    assert isinstance(error, kind)
    assert error.code == f"http_{status}"
    assert sent.status == status
    assert sent.response_excerpt == '{"error":"nope"}'
    assert sent.request_headers["webhook-signature"] == REDACTED


async def test_redirects_are_not_followed(receiver: WebhookReceiver, provider: WebhookProvider) -> None:
    """Given a receiver answering 301 to another location, when posted, then the redirect is
    not followed (one request only) and the failure is temporary."""
    receiver.respond_next(301, headers={"Location": receiver.url + "/elsewhere"})

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(webhook(receiver.url))

    assert caught.value.code == "http_301"
    assert len(receiver.deliveries) == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "expected_ms"),
    [
        (503, "7", 7_000),
        (429, "0", 0),
        (503, "99999999", RETRY_AFTER_MAX_MS),
        (500, "soon", None),
        (500, None, None),
    ],
)
async def test_retry_after_is_passed_on(
    receiver: WebhookReceiver,
    provider: WebhookProvider,
    status: int,
    retry_after: str | None,
    expected_ms: int | None,
) -> None:
    """Given a temporary answer with Retry-After, when posted, then the error carries the
    wait in milliseconds (clamped to a day, None when absent or unreadable)."""
    receiver.respond_next(status, headers={"Retry-After": retry_after} if retry_after else {})

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(webhook(receiver.url))

    assert caught.value.retry_after_ms == expected_ms


async def test_retry_after_as_an_http_date(receiver: WebhookReceiver, provider: WebhookProvider) -> None:
    """Given 503 with Retry-After as an HTTP-date 30 s ahead, when posted, then the error asks
    for about 30 s."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    receiver.respond_next(503, headers={"Retry-After": format_datetime(when, usegmt=True)})

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(webhook(receiver.url))

    assert caught.value.retry_after_ms is not None
    assert 25_000 <= caught.value.retry_after_ms <= 30_000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120_000),
        (" 3 ", 3_000),
        ("Wed, 01 Jan 2031 00:00:30 GMT", 30_000),
        ("Tue, 31 Dec 2030 23:00:00 GMT", 0),  # in the past
        ("Sat, 01 Feb 2031 00:00:00 GMT", RETRY_AFTER_MAX_MS),
        ("-5", None),
        ("²", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
async def test_parse_retry_after(header: str | None, expected: int | None) -> None:
    """Given a Retry-After value at a fixed now, then it becomes clamped milliseconds or None."""
    now = datetime(2031, 1, 1, tzinfo=UTC)

    assert parse_retry_after(header, now=now) == expected


async def test_a_slow_receiver_times_out(
    receiver: WebhookReceiver, make_provider: Callable[..., WebhookProvider]
) -> None:
    """Given a receiver that takes two seconds, when posted with a 300 ms timeout, then the
    attempt fails temporarily as a timeout within well under two seconds."""
    provider = make_provider(WEBHOOK_TIMEOUT="300")
    receiver.delay = 2.0
    started = time.monotonic()

    error, sent = failed(await provider.post(webhook(receiver.url)))

    assert isinstance(error, TemporaryDeliveryError)
    assert error.code == "http_timeout"
    assert time.monotonic() - started < 1.5
    assert sent.status is None and sent.duration_ms is not None and sent.duration_ms >= 250


#: An answer whose status line and headers arrive one byte every DRIP_INTERVAL seconds: about
#: five seconds in all, though no single read ever waits long.
DRIPPED_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: " + b"p" * 64 + b"\r\n\r\n"
DRIP_INTERVAL = 0.05


async def test_a_receiver_dripping_its_headers_is_cut_off_at_the_deadline(
    make_provider: Callable[..., WebhookProvider],
) -> None:
    """Given a receiver that writes its status line and headers one byte at a time (each
    read is quick, the whole answer takes seconds), when posted with a 500 ms timeout, then
    the attempt fails as a timeout and the connection is dropped before the headers are
    complete: the deadline covers the whole attempt, not each read."""
    provider = make_provider(WEBHOOK_TIMEOUT="500")
    with DripServer(DRIPPED_ANSWER, interval=DRIP_INTERVAL) as peer:
        error, sent = failed(await provider.post(webhook(peer.url)))

        assert isinstance(error, TemporaryDeliveryError)
        assert error.code == "http_timeout"
        assert sent.status is None
        await await_until(lambda: peer.connections[0].abandoned, message="the connection was kept open")
        assert peer.connections[0].sent < len(DRIPPED_ANSWER)


async def test_connection_refused_is_temporary(provider: WebhookProvider) -> None:
    """Given nothing listening at the URL, when posted, then it fails temporarily."""
    error, sent = failed(await provider.post(webhook(f"http://127.0.0.1:{closed_port()}/hooks")))

    assert isinstance(error, TemporaryDeliveryError)
    assert error.code == "http_connection"
    assert sent.status is None


async def test_only_64_kib_of_the_answer_is_read(
    receiver: WebhookReceiver, provider: WebhookProvider
) -> None:
    """Given a receiver answering 200 with a 1 MiB body, when posted, then the attempt succeeds
    and keeps only the first 64 KiB, marked truncated."""
    receiver.respond_next(200, body=b"a" * (1024 * 1024))

    result = await provider.send(webhook(receiver.url))

    sent = exchange_of(result)
    assert sent.response_excerpt is not None and len(sent.response_excerpt) == RESPONSE_BODY_MAX_BYTES
    assert sent.response_truncated is True


@pytest.mark.parametrize(
    ("url", "headers", "error_code"),
    [
        ("ftp://127.0.0.1/hooks", None, "http_invalid_url"),
        ("http://user:pw@127.0.0.1/hooks", None, "http_invalid_url"),
        ("{receiver}", {"X-Bad": "line\r\nbreak"}, "http_invalid_header"),
        ("{receiver}", {"X-Bad": "line\u2028break"}, "http_invalid_header"),
        ("{receiver}", {"X-Bad": "vertical\x0btab"}, "http_invalid_header"),
        ("{receiver}", {"Bad Name": "x"}, "http_invalid_header"),
    ],
)
async def test_unsendable_requests_fail_permanently_without_a_request(
    receiver: WebhookReceiver,
    provider: WebhookProvider,
    url: str,
    headers: dict[str, str] | None,
    error_code: str,
) -> None:
    """Given a URL or header that cannot be sent, when posted, then it fails permanently and
    nothing reaches the receiver."""
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(webhook(url.format(receiver=receiver.url), headers=headers))

    assert caught.value.code == error_code
    assert receiver.deliveries == []


async def test_private_networks_can_be_refused(
    receiver: WebhookReceiver, make_provider: Callable[..., WebhookProvider]
) -> None:
    """Given WEBHOOK_ALLOW_PRIVATE_NETWORKS=false, when posting to 127.0.0.1, then it fails
    permanently before any request: the address guard refuses the connect."""
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(webhook(receiver.url))

    assert caught.value.code == "http_address_refused"
    assert "loopback" in caught.value.message
    assert receiver.deliveries == []


@pytest.mark.parametrize("secret", ["", "not-base64-!"])
async def test_a_missing_or_malformed_secret_is_a_configuration_error(secret: str) -> None:
    """Given no usable WEBHOOK_SECRET, when the provider is built, then ConfigError."""
    with pytest.raises(ConfigError):
        WebhookProvider(Settings.from_env({"WEBHOOK_SECRET": secret}))


async def test_redact_headers_hides_credentials() -> None:
    """Given request headers, then signature and credential-looking headers are redacted and
    the rest shown as sent."""
    shown = redact_headers(
        {
            "webhook-signature": "v1,abc",
            "Authorization": "Bearer x",
            "X-Api-Key": "k",
            "X-Client-Secret": "s",
            "webhook-id": "m1",
            "X-Tenant": "acme",
        }
    )

    assert shown == {
        "webhook-signature": REDACTED,
        "authorization": REDACTED,
        "x-api-key": REDACTED,
        "x-client-secret": REDACTED,
        "webhook-id": "m1",
        "x-tenant": "acme",
    }


def _rebinding(answers: list[str]) -> Callable[[str, int], list[netguard.IPAddress]]:
    """A resolver answering each lookup with the next address (DNS rebinding)."""
    remaining = list(answers)

    def resolve(host: str, port: int) -> list[netguard.IPAddress]:
        return [ipaddress.ip_address(remaining.pop(0) if len(remaining) > 1 else remaining[0])]

    return resolve


async def test_the_address_connected_to_is_checked_at_send_time(
    receiver: WebhookReceiver, make_provider: Callable[..., WebhookProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a name that resolved to a public address when it was saved and to loopback now
    (DNS rebinding), when posted with private networks refused, then the attempt fails
    permanently before any connection."""
    monkeypatch.setattr(netguard, "resolve", _rebinding(["93.184.216.34", "127.0.0.1"]))
    port = urlsplit(receiver.url).port
    url = f"http://rebind.example:{port}/hooks"
    netguard.check_url(url, netguard.AddressPolicy())
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")

    error, _sent = failed(await provider.post(webhook(url)))

    assert (error.code, "loopback" in error.message) == ("http_address_refused", True)
    assert receiver.deliveries == []


async def test_an_allowed_name_is_reached_at_the_checked_address(
    receiver: WebhookReceiver, make_provider: Callable[..., WebhookProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a name resolving into WEBHOOK_ALLOWED_SUBNETS, then the request reaches the
    checked address with the name, not the address, as its Host."""
    monkeypatch.setattr(netguard, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    port = urlsplit(receiver.url).port
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false", WEBHOOK_ALLOWED_SUBNETS="127.0.0.0/8")

    await provider.send(webhook(f"http://receiver.example:{port}/hooks"))

    (delivery,) = receiver.wait_for(1)
    assert delivery.verified and delivery.headers["host"] == f"receiver.example:{port}"


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "169.254.169.254", "[::ffff:127.0.0.1]"])
async def test_a_literal_private_address_is_refused_without_a_connection(
    make_provider: Callable[..., WebhookProvider], host: str
) -> None:
    """A literal address is connected to without a lookup: it is checked before the request."""
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")

    error, sent = failed(await provider.post(webhook(f"http://{host}:9/hooks")))

    assert error.code == "http_address_refused"
    assert sent.status is None
