"""The web push provider against a local push service that checks VAPID, the RFC 8030
headers and decrypts every push as the browser would."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared import netguard
from shared.config import Settings
from shared.errors import ConfigError, PermanentDeliveryError, TargetGone, TemporaryDeliveryError
from shared.payloads import PushPayload, PushTarget
from shared.push_settings import load_vapid_private_key
from tests.sinks.push_service import PushService, Subscription
from tests.workers.providers.messages import outgoing
from workers.providers.base import Outgoing
from workers.providers.webpush import (
    DEFAULT_TTL_SECONDS,
    VAPID_LIFETIME_SECONDS,
    VapidSigner,
    WebPushProvider,
    b64url_decode,
    encrypt,
    generate_vapid_keys,
    notification_body,
    public_key,
    push_headers,
    topic_header,
)

pytestmark = pytest.mark.anyio

PRIVATE_KEY, PUBLIC_KEY = generate_vapid_keys()
SUBJECT = "mailto:ops@example.com"
_OTHER_PRIVATE, OTHER_PUBLIC = generate_vapid_keys()


def push(**fields: Any) -> Outgoing[PushPayload]:
    payload = PushPayload(title="Order shipped", body="Your parcel is on its way")
    return outgoing(replace(payload, **fields))


def target(subscription: Subscription) -> PushTarget:
    """The device row the pipeline would hand over for this subscription."""
    shape = subscription.as_json()
    return PushTarget(
        id="device-1",
        kind="web",
        token=shape["endpoint"],
        p256dh=shape["keys"]["p256dh"],
        auth=shape["keys"]["auth"],
    )


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def pem(key_text: str, form: serialization.PrivateFormat) -> str:
    return (
        load_vapid_private_key(key_text)
        .private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
        .decode()
    )


def env(**overrides: str) -> dict[str, str]:
    return {"VAPID_PRIVATE_KEY": PRIVATE_KEY, "VAPID_SUBJECT": SUBJECT, "PUSH_TIMEOUT": "2000", **overrides}


@pytest.fixture
def service() -> Iterator[PushService]:
    with PushService() as running:
        yield running


@pytest.fixture
async def make_provider(tmp_path: Path) -> AsyncIterator[Callable[..., WebPushProvider]]:
    made: list[WebPushProvider] = []

    def make(**overrides: str) -> WebPushProvider:
        provider = WebPushProvider(Settings.from_env({**env(**overrides), "KAI_VAR_DIR": str(tmp_path)}))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., WebPushProvider]) -> WebPushProvider:
    return make_provider()


# -- delivery ----------------------------------------------------------------------------------


async def test_a_notification_arrives_decrypted_with_its_headers(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given a subscription, when a notification is sent, then the push service accepts it and
    the browser decrypts title, body, url, icon, data and the topic as tag, with TTL, Urgency
    and Topic as given; the result carries the service's Location."""
    subscription = service.subscribe()
    message = push(
        url="https://app.example/orders/42",
        icon="https://app.example/icon.png",
        data={"order": "42", "note": "café ✓"},
        ttl=3600,
        urgency="high",
        topic="order-42",
    )

    result = await provider.send(message, target(subscription))

    (delivered,) = service.wait_for(1)
    assert delivered.subscription_id == subscription.id
    assert delivered.payload == {
        "title": "Order shipped",
        "body": "Your parcel is on its way",
        "url": "https://app.example/orders/42",
        "icon": "https://app.example/icon.png",
        "data": {"order": "42", "note": "café ✓"},
        "tag": "order-42",
    }
    headers = delivered.headers
    assert (headers["ttl"], headers["urgency"], headers["topic"]) == ("3600", "high", "order-42")
    assert headers["content-encoding"] == "aes128gcm"
    assert (result.provider_message_id, result.delivered, result.provider) == (
        delivered.location,
        False,
        "webpush",
    )
    assert service.rejections == []


async def test_defaults_fill_in_and_absent_fields_are_left_out(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given a bare notification, then TTL is four weeks, Urgency normal, no Topic is sent and
    the body carries no null fields."""
    subscription = service.subscribe()

    await provider.send(push(), target(subscription))

    (delivered,) = service.wait_for(1)
    assert delivered.payload == {"title": "Order shipped", "body": "Your parcel is on its way", "data": {}}
    assert delivered.headers["ttl"] == str(DEFAULT_TTL_SECONDS) == "2419200"
    assert delivered.headers["urgency"] == "normal"
    assert "topic" not in delivered.headers


async def test_a_topic_outside_the_rfc_alphabet_is_sent_as_a_stable_digest(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given a topic with spaces and over 32 characters, then the Topic header is a 32-character
    URL-safe digest (the same for the same topic, so replacement still works), and the tag the
    service worker sees keeps the topic as given."""
    subscription = service.subscribe()
    topic = "order 42: shipping status for the whole family"

    await provider.send(push(topic=topic), target(subscription))
    await provider.send(push(topic=topic), target(subscription))

    first, second = service.wait_for(2)
    assert first.headers["topic"] == second.headers["topic"] == topic_header(topic)
    assert len(first.headers["topic"]) == 32 and first.headers["topic"] != topic
    assert first.payload["tag"] == topic
    assert topic_header("other topic") != topic_header(topic)


async def test_notifications_in_flight_together(service: PushService, provider: WebPushProvider) -> None:
    """Given twenty notifications to ten subscriptions at once, then every one arrives and
    decrypts for its own subscription."""
    subscriptions = [service.subscribe() for _ in range(10)]

    sends = [
        asyncio.create_task(provider.send(push(body=f"n{i}"), target(subscriptions[i % 10])))
        for i in range(20)
    ]

    delivered = await service.until_delivered(20)
    await asyncio.gather(*sends)
    assert sorted(d.payload["body"] for d in delivered) == sorted(f"n{i}" for i in range(20))
    for subscription in subscriptions:
        assert len(service.deliveries_to(subscription)) == 2


# -- VAPID -------------------------------------------------------------------------------------


async def test_the_vapid_jwt_holds_what_push_services_check(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given a subscription made with our applicationServerKey, when a push is sent, then the
    ES256 JWT verifies with k, k is our public key, aud is the service's origin, exp is about
    twelve hours ahead (never more than 24) and sub is VAPID_SUBJECT."""
    settings = Settings.from_env(env())
    subscription = service.subscribe(application_server_key=public_key(settings))

    await provider.send(push(), target(subscription))

    (delivered,) = service.wait_for(1)
    assert delivered.headers["authorization"].startswith("vapid t=")
    assert delivered.vapid_key == provider.public_key == PUBLIC_KEY
    assert delivered.jwt_header["alg"] == "ES256"
    claims = delivered.claims
    assert (claims["aud"], claims["sub"]) == (service.origin, SUBJECT)
    assert VAPID_LIFETIME_SECONDS - 60 <= claims["exp"] - time.time() <= 24 * 3600


async def test_a_key_other_than_the_subscriptions_is_refused(
    service: PushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    """Given a subscription made with another applicationServerKey (the VAPID key was rotated
    without re-subscribing), then the service answers 403 and the failure is temporary: the
    configuration needs fixing, not the message."""
    _other_private, other_public = generate_vapid_keys()
    subscription = service.subscribe(application_server_key=other_public)
    provider = make_provider()

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), target(subscription))

    assert caught.value.code == "webpush_unauthorized"
    assert [r.status for r in service.rejections] == [403]
    assert service.deliveries == []


async def test_a_401_from_the_service_waits_for_a_configuration_fix(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given the service answering 401 (autopush's answer to a JWT it does not accept), then
    the failure is temporary, as for 403."""
    subscription = service.subscribe()
    service.fail_next(401, subscription)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), target(subscription))

    assert caught.value.code == "webpush_unauthorized"


def _signed(clock_offset: float = 0.0, subject: str = SUBJECT) -> VapidSigner:
    """A signer of our key whose clock runs ``clock_offset`` seconds off."""
    return VapidSigner(load_vapid_private_key(PRIVATE_KEY), subject, clock=lambda: time.time() + clock_offset)


Tamper = Callable[[PushService, dict[str, str], bytes], tuple[dict[str, str], bytes]]

PEER_CHECKS: list[tuple[str, Tamper, int, str]] = [
    ("as sent", lambda s, h, b: (h, b), 201, ""),
    (
        "no Authorization",
        lambda s, h, b: ({k: v for k, v in h.items() if k != "authorization"}, b),
        401,
        "missing",
    ),
    (
        "another audience",
        lambda s, h, b: ({**h, "authorization": _signed().header("https://push.example")}, b),
        401,
        "aud must be",
    ),
    (
        "expired",
        lambda s, h, b: ({**h, "authorization": _signed(-13 * 3600).header(s.origin)}, b),
        401,
        "expired",
    ),
    (
        "over 24 hours ahead",
        lambda s, h, b: ({**h, "authorization": _signed(13 * 3600).header(s.origin)}, b),
        401,
        "24 hours",
    ),
    (
        "sub not a URL",
        lambda s, h, b: ({**h, "authorization": _signed(subject="ops@example.com").header(s.origin)}, b),
        401,
        "sub",
    ),
    (
        "k of another key",
        lambda s, h, b: (
            {**h, "authorization": h["authorization"].split(", k=")[0] + f", k={OTHER_PUBLIC}"},
            b,
        ),
        401,
        "does not verify",
    ),
    ("no TTL", lambda s, h, b: ({k: v for k, v in h.items() if k != "ttl"}, b), 400, "TTL"),
    ("unknown urgency", lambda s, h, b: ({**h, "urgency": "urgent"}, b), 400, "Urgency"),
    ("topic with a space", lambda s, h, b: ({**h, "topic": "order 42"}, b), 400, "Topic"),
    ("legacy encoding", lambda s, h, b: ({**h, "content-encoding": "aesgcm"}, b), 400, "aes128gcm"),
    ("tampered body", lambda s, h, b: (h, b[:-1] + bytes([b[-1] ^ 1])), 400, "decrypt"),
]


@pytest.mark.parametrize(
    ("change", "tamper", "status", "reason"), PEER_CHECKS, ids=[c[0] for c in PEER_CHECKS]
)
async def test_the_push_service_checks_what_real_ones_check(
    service: PushService, change: str, tamper: Tamper, status: int, reason: str
) -> None:
    """Given a push as the provider builds it, changed in one way, when posted to the test
    push service, then it answers as a real service would (so the tests above prove what
    they claim)."""
    subscription = service.subscribe()
    sub = target(subscription)
    assert sub.p256dh is not None and sub.auth is not None
    body = encrypt(notification_body(push().payload), b64url_decode(sub.p256dh), b64url_decode(sub.auth))
    headers = push_headers(push().payload, _signed().header(service.origin))
    headers, body = tamper(service, headers, body)

    async with httpx.AsyncClient() as client:
        answer = await client.post(subscription.endpoint, content=body, headers=headers)

    assert answer.status_code == status, answer.text
    assert reason in answer.text
    assert len(service.deliveries) == (1 if status == 201 else 0)


async def test_the_vapid_header_is_signed_once_per_audience(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given three pushes to one push service and one to another, then the first three carry
    the very same Authorization and the other its own, with its own aud."""
    subscription = service.subscribe()
    with PushService() as elsewhere:
        for _ in range(3):
            await provider.send(push(), target(subscription))
        await provider.send(push(), target(elsewhere.subscribe()))

        (there,) = elsewhere.wait_for(1)
    here = service.wait_for(3)
    assert len({d.headers["authorization"] for d in here}) == 1
    assert there.headers["authorization"] != here[0].headers["authorization"]
    assert there.claims["aud"] == elsewhere.origin != service.origin


async def test_a_kept_vapid_header_is_renewed_before_it_expires() -> None:
    """Given a signed header, then it is reused eleven hours on with the same exp, and signed
    again once less than an hour is left."""
    now = [1_700_000_000.0]
    signer = VapidSigner(load_vapid_private_key(PRIVATE_KEY), SUBJECT, clock=lambda: now[0])
    first = signer.header("https://push.example")

    now[0] += 10.5 * 3600
    assert signer.header("https://push.example") == first
    now[0] += 1 * 3600
    renewed = signer.header("https://push.example")

    assert renewed != first
    assert signer.header("https://other.example") not in (first, renewed)


# -- keys and configuration --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["raw", "pkcs8", "sec1"])
async def test_raw_and_pem_keys_are_accepted(
    service: PushService, make_provider: Callable[..., WebPushProvider], form: str
) -> None:
    """Given the same VAPID key as raw base64url, PKCS#8 PEM or SEC 1 PEM, then the push
    verifies with the same public key."""
    text = {
        "raw": PRIVATE_KEY,
        "pkcs8": pem(PRIVATE_KEY, serialization.PrivateFormat.PKCS8),
        "sec1": pem(PRIVATE_KEY, serialization.PrivateFormat.TraditionalOpenSSL),
    }[form]
    provider = make_provider(VAPID_PRIVATE_KEY=text)
    subscription = service.subscribe(application_server_key=PUBLIC_KEY)

    await provider.send(push(), target(subscription))

    (delivered,) = service.wait_for(1)
    assert delivered.vapid_key == PUBLIC_KEY


async def test_generated_keys_round_trip() -> None:
    """Given a generated pair, then the private key is 32 raw bytes, the public key the
    65-byte uncompressed point of it, and public_key() derives the same from the settings."""
    private, public = generate_vapid_keys()

    raw_private, raw_public = b64url_decode(private), b64url_decode(public)
    assert (len(raw_private), len(raw_public), raw_public[0]) == (32, 65, 4)
    assert "=" not in private + public
    derived = (
        load_vapid_private_key(private)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    assert derived == raw_public
    assert public_key(Settings.from_env(env(VAPID_PRIVATE_KEY=private))) == public
    assert generate_vapid_keys()[0] != private


async def test_missing_vapid_settings_are_a_configuration_error() -> None:
    """Given no VAPID settings, when the provider is built, then ConfigError names both."""
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY, VAPID_SUBJECT"):
        WebPushProvider(Settings.from_env({}))


@pytest.mark.parametrize(
    "key",
    [
        "not-a-key",
        "AAAA",
        "A" * 43,  # 32 zero bytes: not a valid scalar
        pem(generate_vapid_keys()[0], serialization.PrivateFormat.PKCS8).replace("MI", "XX", 1),
    ],
)
async def test_a_malformed_key_is_a_configuration_error_that_does_not_echo_it(key: str) -> None:
    """Given a VAPID_PRIVATE_KEY that is no P-256 key, then the settings refuse it without
    repeating it (it is a secret)."""
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY") as caught:
        WebPushProvider(Settings.from_env(env(VAPID_PRIVATE_KEY=key)))

    assert key not in str(caught.value)


async def test_a_key_on_another_curve_is_refused() -> None:
    """Given a P-384 key, then it is refused: VAPID signs ES256, on P-256 only."""
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    with pytest.raises(ConfigError, match="P-256"):
        WebPushProvider(Settings.from_env(env(VAPID_PRIVATE_KEY=other.decode())))


# -- answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [410, 404])
async def test_a_gone_subscription_is_pruned(
    service: PushService, provider: WebPushProvider, status: int
) -> None:
    """Given a subscription the service answers 410 or 404 for (unsubscribed, expired), then
    the provider raises TargetGone, whose message names the origin and never the endpoint's
    path (a capability URL)."""
    subscription = service.subscribe()
    service.fail_always(status, subscription)

    with pytest.raises(TargetGone) as caught:
        await provider.send(push(), target(subscription))

    assert caught.value.code == "push_subscription_gone"
    assert service.origin in caught.value.message
    assert subscription.id not in caught.value.message


async def test_an_endpoint_the_service_does_not_know_is_gone(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given an endpoint on the service that names no subscription, then its 404 is gone."""
    stale = replace(target(service.subscribe()), token=f"{service.origin}/push/unknown-subscription")

    with pytest.raises(TargetGone):
        await provider.send(push(), stale)

    assert [r.status for r in service.rejections] == [404]


@pytest.mark.parametrize(
    ("status", "retry_after", "expected_ms"),
    [(429, "120", 120_000), (503, "7", 7_000), (500, None, None), (502, None, None)],
)
async def test_rate_limits_and_server_errors_are_temporary(
    service: PushService,
    provider: WebPushProvider,
    status: int,
    retry_after: str | None,
    expected_ms: int | None,
) -> None:
    """Given a 429/503 with Retry-After or a 5xx, then the failure is temporary and carries the
    service's delay; the next attempt goes through."""
    subscription = service.subscribe()
    service.fail_next(status, subscription, retry_after=retry_after)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), target(subscription))
    await provider.send(push(), target(subscription))

    assert (caught.value.code, caught.value.retry_after_ms) == (f"webpush_{status}", expected_ms)
    assert subscription.id not in caught.value.message
    assert len(service.wait_for(1)) == 1


async def test_a_payload_the_service_finds_too_large_fails_for_good(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given a service taking smaller bodies than ours, then its 413 is a permanent
    push_too_large."""
    service.max_body = 100
    subscription = service.subscribe()

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), target(subscription))

    assert caught.value.code == "push_too_large"
    assert [r.status for r in service.rejections] == [413]


async def test_a_payload_over_4_kib_is_refused_without_a_request(
    service: PushService, provider: WebPushProvider
) -> None:
    """Given a notification whose encrypted body exceeds 4096 bytes, then it fails for good
    before any request: no push service would take it."""
    subscription = service.subscribe()

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(body="x" * 4000), target(subscription))

    assert caught.value.code == "push_too_large"
    assert service.deliveries == [] and service.rejections == []


async def test_other_client_errors_are_permanent(service: PushService, provider: WebPushProvider) -> None:
    """Given a 400, then the failure is permanent and quotes the service's short answer."""
    subscription = service.subscribe()
    service.fail_next(400, subscription)

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), target(subscription))

    assert type(caught.value) is PermanentDeliveryError
    assert caught.value.code == "webpush_400"
    assert "programmed answer 400" in caught.value.message


async def test_connection_refused_is_temporary(provider: WebPushProvider, service: PushService) -> None:
    """Given nothing listening at the endpoint, then the failure is temporary and names the
    origin only."""
    port = closed_port()
    gone = replace(target(service.subscribe()), token=f"http://127.0.0.1:{port}/push/secret-path")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), gone)

    assert caught.value.code == "webpush_connection"
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "secret-path" not in caught.value.message


async def test_a_slow_service_times_out(
    service: PushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    """Given a service answering after two seconds and a 200 ms PUSH_TIMEOUT, then the attempt
    fails temporarily as a timeout."""
    provider = make_provider(PUSH_TIMEOUT="200")
    service.delay = 2.0

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), target(service.subscribe()))

    assert caught.value.code == "webpush_timeout"


# -- what may be reached -----------------------------------------------------------------------


async def test_a_private_endpoint_is_refused_by_the_address_guard(
    service: PushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    """Given private networks not allowed, when a subscription's endpoint is on loopback, then
    it fails permanently before any request."""
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")
    subscription = service.subscribe()

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), target(subscription))

    assert caught.value.code == "webpush_address_refused"
    assert "loopback" in caught.value.message
    assert service.deliveries == [] and service.rejections == []


async def test_a_name_resolving_to_a_private_address_is_refused_at_connect(
    service: PushService, make_provider: Callable[..., WebPushProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a push service name that resolves to loopback, then the guarded resolver refuses
    it before any connection."""
    monkeypatch.setattr(netguard, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    provider = make_provider(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")
    subscription = target(service.subscribe())
    port = urlsplit(subscription.token).port
    renamed = replace(subscription, token=f"http://push.example:{port}/push/x")

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), renamed)

    assert caught.value.code == "webpush_address_refused"
    assert service.rejections == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kind": "fcm"}, "not a web push subscription"),
        ({"p256dh": None}, "missing"),
        ({"p256dh": "AAAA"}, "p256dh"),
        ({"token": "ftp://push.example/x"}, "endpoint"),
    ],
)
async def test_a_malformed_subscription_fails_without_a_request(
    service: PushService, provider: WebPushProvider, change: dict[str, Any], reason: str
) -> None:
    """Given a target that is not a usable web push subscription, then it fails for good
    before any request."""
    broken = replace(target(service.subscribe()), **change)

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), broken)

    assert caught.value.code == "push_invalid_subscription"
    assert reason in caught.value.message
    assert service.rejections == []
