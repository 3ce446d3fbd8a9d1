"""The APNs provider against a local HTTP/2-over-TLS provider API (tests/sinks/apns_peer.py)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.config import Settings
from shared.errors import ConfigError, PermanentDeliveryError, TargetGone, TemporaryDeliveryError
from shared.payloads import PushPayload, PushTarget
from tests.sinks.apns_peer import DEFAULT_BUNDLE_ID, ApnsPeer
from tests.workers.providers.messages import outgoing
from workers.providers.apns import PAYLOAD_MAX_BYTES, ApnsProvider, classify
from workers.providers.base import Outgoing

pytestmark = pytest.mark.anyio

OTHER_APP = "com.example.other"


def push(message_id: str | None = None, **fields: Any) -> Outgoing[PushPayload]:
    payload = PushPayload(**{"title": "Your order shipped", "body": "It arrives Tuesday", **fields})
    return outgoing(payload, message_id)


def device(token: str, app_id: str | None = DEFAULT_BUNDLE_ID) -> PushTarget:
    return PushTarget(id="dev-1", kind="apns", token=token, app_id=app_id)


@pytest.fixture(scope="module")
def running_peer() -> Iterator[ApnsPeer]:
    with ApnsPeer() as running:
        yield running


@pytest.fixture
def peer(running_peer: ApnsPeer) -> ApnsPeer:
    """The module's peer (its CA and server made once), with nothing recorded yet."""
    running_peer.reset()
    return running_peer


@pytest.fixture
def env(peer: ApnsPeer, tmp_path: Path) -> dict[str, str]:
    return {
        "APNS_KEY": peer.signing_key(),
        "APNS_KEY_ID": peer.key_id,
        "APNS_TEAM_ID": peer.team_id,
        "APNS_TOPIC": DEFAULT_BUNDLE_ID,
        "APNS_API_BASE": peer.base_url,
        "APNS_CA_FILE": peer.ca_file,
        "PUSH_TIMEOUT": "2000",
        "KAI_VAR_DIR": str(tmp_path),
    }


@pytest.fixture
async def make_provider(env: dict[str, str]) -> AsyncIterator[Callable[..., ApnsProvider]]:
    made: list[ApnsProvider] = []

    def make(*, clock: Callable[[], float] = time.time, **overrides: str) -> ApnsProvider:
        provider = ApnsProvider(Settings.from_env({**env, **overrides}), clock=clock)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., ApnsProvider]) -> ApnsProvider:
    return make_provider()


async def test_an_alert_goes_out_over_http2_with_apples_headers(
    peer: ApnsPeer, provider: ApnsProvider
) -> None:
    """Given a high-urgency push with a TTL, a topic, a URL and data, when sent, then Apple
    receives over HTTP/2 one POST for the device with the app's topic, push type alert,
    priority 10, the expiration, the collapse id and our message id as apns-id, and a payload
    with the alert under ``aps`` and the URL and data beside it; the result is Apple's apns-id."""
    token = peer.register()
    message = push(
        url="https://shop.example/orders/42",
        data={"orderId": "42"},
        ttl=600,
        urgency="high",
        topic="order-42",
    )
    before = int(time.time())

    result = await provider.send(message, device(token))

    (sent,) = peer.notifications
    assert sent.http_version == "2"
    headers = sent.headers
    assert headers["apns-topic"] == DEFAULT_BUNDLE_ID
    assert (headers["apns-push-type"], headers["apns-priority"]) == ("alert", "10")
    assert before + 600 <= int(headers["apns-expiration"]) <= int(time.time()) + 600
    assert headers["apns-collapse-id"] == "order-42"
    assert headers["apns-id"] == message.id
    assert sent.payload == {
        "aps": {
            "alert": {"title": "Your order shipped", "body": "It arrives Tuesday"},
            "sound": "default",
            "thread-id": "order-42",
        },
        "url": "https://shop.example/orders/42",
        "orderId": "42",
    }
    assert (result.provider_message_id, result.provider, result.delivered) == (message.id, "apns", False)


@pytest.mark.parametrize("urgency", ["normal", "low", "very-low"])
async def test_other_urgencies_are_priority_5_under_the_default_topic(
    peer: ApnsPeer, provider: ApnsProvider, urgency: str
) -> None:
    """Given a device naming no app and a push below high urgency without TTL or topic, sent
    under a message id that is not a UUID, when sent, then APNS_TOPIC is the topic, the
    priority is 5, no expiration, collapse id or apns-id is sent, and the result is the
    apns-id Apple made up."""
    token = peer.register()

    result = await provider.send(push("msg-not-a-uuid", urgency=urgency), device(token, app_id=None))

    (sent,) = peer.notifications
    assert (sent.headers["apns-topic"], sent.headers["apns-priority"]) == (DEFAULT_BUNDLE_ID, "5")
    assert not {"apns-expiration", "apns-collapse-id", "apns-id"} & set(sent.headers)
    assert result.provider_message_id == sent.apns_id


async def test_a_zero_ttl_means_deliver_once_and_a_long_topic_a_digest(
    peer: ApnsPeer, provider: ApnsProvider
) -> None:
    """Given a TTL of 0 and a topic over 64 bytes, when sent, then apns-expiration is 0 (try
    once, do not store) and apns-collapse-id a 64-character digest Apple accepts."""
    token = peer.register()

    await provider.send(push(ttl=0, topic="inventory/" + "ü" * 60), device(token))

    (sent,) = peer.notifications
    assert sent.headers["apns-expiration"] == "0"
    assert len(sent.headers["apns-collapse-id"]) == 64


async def test_one_provider_token_serves_a_burst_of_sends(peer: ApnsPeer, provider: ApnsProvider) -> None:
    """Given twenty pushes sent at once, then one provider token signs them all: an ES256 JWT
    whose header is Apple's ``{"alg": "ES256", "kid": …}`` and whose claims are iss and iat."""
    tokens = [peer.register() for _ in range(20)]

    await asyncio.gather(*(provider.send(push(), device(t)) for t in tokens))

    bearers = {n.provider_token for n in peer.notifications}
    assert sorted(n.device_token for n in peer.notifications) == sorted(tokens)
    (bearer,) = bearers
    assert jwt.get_unverified_header(bearer) == {"alg": "ES256", "kid": peer.key_id}
    claims = jwt.decode(bearer, options={"verify_signature": False})
    assert set(claims) == {"iss", "iat"} and claims["iss"] == peer.team_id


async def test_the_provider_token_is_replaced_after_50_minutes(
    peer: ApnsPeer, make_provider: Callable[..., ApnsProvider]
) -> None:
    """Given a provider token made 49 minutes ago, then it is still used; at 51 minutes a new
    one is signed (Apple refuses them after 60)."""
    offset = [-51 * 60.0]
    provider = make_provider(clock=lambda: time.time() + offset[0])
    token = peer.register()

    await provider.send(push(), device(token))
    offset[0] = -2 * 60.0
    await provider.send(push(), device(token))
    offset[0] = 0.0
    await provider.send(push(), device(token))

    first, second, third = (n.provider_token for n in peer.notifications)
    assert first == second != third


async def test_a_stale_provider_token_is_refused_then_replaced(
    peer: ApnsPeer, make_provider: Callable[..., ApnsProvider]
) -> None:
    """Given a clock an hour and a minute behind, when a push is sent, then Apple answers 403
    ExpiredProviderToken and the failure is temporary ``apns_unauthorized``; the next attempt
    (the clock right again) signs a new token and goes out."""
    offset = [-61 * 60.0]
    provider = make_provider(clock=lambda: time.time() + offset[0])
    token = peer.register()

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(token))
    offset[0] = 0.0
    await provider.send(push(), device(token))

    assert caught.value.code == "apns_unauthorized" and "ExpiredProviderToken" in caught.value.message
    assert len(peer.notifications) == 1


async def test_a_refused_provider_token_is_replaced_at_most_every_20_minutes(
    peer: ApnsPeer, provider: ApnsProvider
) -> None:
    """Given Apple refusing the provider token (403 ExpiredProviderToken) twice in a row, then
    the attempt after the first refusal signs a new token, but the second refusal, minutes
    later, does not: Apple answers TooManyProviderTokenUpdates to faster updates."""
    token = peer.register()
    await provider.send(push(), device(token))
    peer.fail_next(403, "ExpiredProviderToken")
    with pytest.raises(TemporaryDeliveryError) as first_refusal:
        await provider.send(push(), device(token))
    await provider.send(push(), device(token))
    peer.fail_next(403, "InvalidProviderToken")
    with pytest.raises(TemporaryDeliveryError):
        await provider.send(push(), device(token))
    await provider.send(push(), device(token))

    assert first_refusal.value.code == "apns_unauthorized"
    first, second, third = (n.provider_token for n in peer.notifications)
    assert first != second == third


@pytest.mark.parametrize("how", ["unregistered", "unknown", "other app", "not hex"])
async def test_a_token_apple_no_longer_knows_is_gone(
    peer: ApnsPeer, provider: ApnsProvider, how: str
) -> None:
    """Given a token whose app was removed (410 Unregistered), one Apple never issued (400
    BadDeviceToken), one of another app (400 DeviceTokenNotForTopic) or no token at all, when
    a push is sent, then it fails as TargetGone ``push_token_gone`` naming a prefix of the
    token only."""
    if how == "unregistered":
        token = peer.register()
        peer.unregister(token)
    elif how == "unknown":
        token = "ab" * 32
    elif how == "other app":
        token = peer.register(OTHER_APP)
    else:
        token = "../../../3/device/" + "ab" * 32

    with pytest.raises(TargetGone) as caught:
        await provider.send(push(), device(token))

    assert caught.value.code == "push_token_gone"
    assert token not in caught.value.message and token[:8] in caught.value.message
    expected = {"unregistered": 410, "unknown": 400, "other app": 400, "not hex": None}[how]
    assert [s for s, _ in peer.refusals] == ([expected] if expected else [])
    if how == "unregistered":
        assert "no longer active since" in caught.value.message


@pytest.mark.parametrize(
    ("status", "reason", "retry_after", "code"),
    [
        (429, "TooManyRequests", 7, "apns_too_many_requests"),
        (503, "ServiceUnavailable", None, "apns_service_unavailable"),
        (500, "InternalServerError", None, "apns_internal_server_error"),
    ],
)
async def test_throttling_and_server_errors_are_temporary(
    peer: ApnsPeer, provider: ApnsProvider, status: int, reason: str, retry_after: int | None, code: str
) -> None:
    """Given Apple answering 429 TooManyRequests (with Retry-After), 503 or 500, when a push
    is sent, then the failure is temporary and carries the wait Apple asked for."""
    peer.fail_next(status, reason, retry_after=retry_after)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert caught.value.code == code
    assert caught.value.retry_after_ms == (retry_after * 1000 if retry_after else None)


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [(413, "PayloadTooLarge", "push_too_large"), (400, "TopicDisallowed", "apns_topic_disallowed")],
)
async def test_request_errors_are_permanent(
    peer: ApnsPeer, provider: ApnsProvider, status: int, reason: str, code: str
) -> None:
    """Given Apple refusing the request (413 PayloadTooLarge, 400 TopicDisallowed), when a push
    is sent, then the failure is permanent and not a TargetGone."""
    peer.fail_next(status, reason)

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert type(caught.value) is PermanentDeliveryError and caught.value.code == code


async def test_a_payload_over_4_kib_fails_before_sending(peer: ApnsPeer, provider: ApnsProvider) -> None:
    """Given a body making the payload larger than 4096 bytes, when sent, then it fails
    permanently as ``push_too_large`` and nothing reaches Apple."""
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(body="x" * PAYLOAD_MAX_BYTES), device(peer.register()))

    assert caught.value.code == "push_too_large"
    assert peer.refusals == [] and peer.notifications == []


async def test_no_topic_anywhere_fails_permanently(
    make_provider: Callable[..., ApnsProvider], peer: ApnsPeer
) -> None:
    """Given neither the device's app nor APNS_TOPIC, when sent, then it fails permanently."""
    provider = make_provider(APNS_TOPIC="")

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), device(peer.register(), app_id=None))

    assert caught.value.code == "apns_no_topic"


async def test_a_server_outside_the_trusted_cas_is_refused(
    peer: ApnsPeer, make_provider: Callable[..., ApnsProvider]
) -> None:
    """Given no APNS_CA_FILE (the system's trust store, which does not know the peer's CA),
    when a push is sent, then TLS verification fails and nothing is sent: a temporary
    connection failure."""
    provider = make_provider(APNS_CA_FILE="")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert caught.value.code == "apns_connection"


async def test_a_slow_answer_times_out(peer: ApnsPeer, make_provider: Callable[..., ApnsProvider]) -> None:
    """Given Apple answering after a second, when a push is sent with a 300 ms timeout, then
    it fails temporarily as a timeout."""
    provider = make_provider(PUSH_TIMEOUT="300")
    peer.delay = 1.0
    try:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await provider.send(push(), device(peer.register()))
    finally:
        peer.delay = 0.0

    assert caught.value.code == "apns_timeout"


@pytest.mark.parametrize("unset", ["APNS_KEY", "APNS_KEY_ID", "APNS_TEAM_ID"])
async def test_missing_settings_are_a_configuration_error(env: dict[str, str], unset: str) -> None:
    """Given an APNs setting left empty, when the provider is built, then ConfigError names it."""
    with pytest.raises(ConfigError, match=unset):
        ApnsProvider(Settings.from_env({**env, unset: ""}))


async def test_no_settings_or_a_key_that_is_not_p256_are_configuration_errors(env: dict[str, str]) -> None:
    """Given no APNs settings at all, or a signing key that is not a P-256 key, when the
    provider is built, then ConfigError says what is wrong."""
    with pytest.raises(ConfigError, match="APNS_KEY, APNS_KEY_ID, APNS_TEAM_ID"):
        ApnsProvider(Settings.from_env({}))
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="P-256"):
        ApnsProvider(Settings.from_env({**env, "APNS_KEY": p384.decode()}))


async def test_the_peer_speaks_http2_only_and_checks_the_provider_token(peer: ApnsPeer) -> None:
    """Given requests Apple would refuse (HTTP/1.1, no provider token, one signed by another
    key), then the peer refuses them too: the provider tests prove something only because the
    peer is this strict."""
    url = f"{peer.base_url}/3/device/{peer.register()}"
    body = json.dumps({"aps": {"alert": "hi"}}).encode()
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(
        {"iss": peer.team_id, "iat": int(time.time())},
        other_key,
        algorithm="ES256",
        headers={"kid": peer.key_id},
    )
    tls = ssl.create_default_context(cafile=peer.ca_file)
    async with httpx.AsyncClient(verify=tls) as http1, httpx.AsyncClient(http2=True, verify=tls) as http2:
        old = await http1.post(url, content=body, headers={"apns-topic": DEFAULT_BUNDLE_ID})
        anonymous = await http2.post(url, content=body, headers={"apns-topic": DEFAULT_BUNDLE_ID})
        signed = await http2.post(
            url, content=body, headers={"apns-topic": DEFAULT_BUNDLE_ID, "authorization": f"bearer {forged}"}
        )

    assert (old.status_code, old.json()["reason"]) == (400, "BadProtocol")
    assert (anonymous.status_code, anonymous.json()["reason"]) == (403, "MissingProviderToken")
    assert (signed.status_code, signed.json()["reason"]) == (403, "InvalidProviderToken")


async def test_classify_maps_transport_failures() -> None:
    """Given failures without an answer, then all are temporary, timeouts told apart."""
    assert classify(TimeoutError()).code == "apns_timeout"
    assert classify(httpx.ConnectTimeout("slow")).code == "apns_timeout"
    assert classify(httpx.ConnectError("refused")).code == "apns_connection"
    assert classify(httpx.RemoteProtocolError("GOAWAY")).code == "apns_connection"
