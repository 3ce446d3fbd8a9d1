"""The FCM provider against a local HTTP v1 API and OAuth2 token endpoint (tests/sinks/fcm_peer.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import Settings
from shared.errors import ConfigError, PermanentDeliveryError, TargetGone, TemporaryDeliveryError
from shared.payloads import PushPayload, PushTarget
from tests.sinks.fcm_peer import FCM_SCOPE, FcmPeer, Refusal, check_message
from tests.workers.providers.messages import outgoing
from workers.providers.base import Outgoing
from workers.providers.fcm import FcmProvider, answer_error, classify

pytestmark = pytest.mark.anyio


def push(**fields: Any) -> Outgoing[PushPayload]:
    return outgoing(PushPayload(**{"title": "Your order shipped", "body": "It arrives Tuesday", **fields}))


def device(token: str) -> PushTarget:
    return PushTarget(id="dev-1", kind="fcm", token=token)


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def running_peer() -> Iterator[FcmPeer]:
    with FcmPeer() as running:
        yield running


@pytest.fixture(scope="module")
def account(running_peer: FcmPeer) -> dict[str, Any]:
    """One service account for the module (an RSA key takes a while to make)."""
    return running_peer.service_account()


@pytest.fixture
def peer(running_peer: FcmPeer) -> FcmPeer:
    running_peer.reset()
    return running_peer


@pytest.fixture
async def make_provider(
    tmp_path: Path, peer: FcmPeer, account: dict[str, Any]
) -> AsyncIterator[Callable[..., FcmProvider]]:
    made: list[FcmProvider] = []

    def make(
        service_account: dict[str, Any] | None = None, *, clock: Callable[[], float] = time.time, **env: str
    ) -> FcmProvider:
        settings = Settings.from_env(
            {
                "FCM_SERVICE_ACCOUNT": json.dumps(service_account or account),
                "FCM_API_BASE": peer.base_url,
                "PUSH_TIMEOUT": "2000",
                "KAI_VAR_DIR": str(tmp_path),
                **env,
            }
        )
        provider = FcmProvider(settings, clock=clock)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., FcmProvider]) -> FcmProvider:
    return make_provider()


async def test_a_notification_goes_out_in_the_v1_shape(peer: FcmPeer, provider: FcmProvider) -> None:
    """Given a high-urgency push with a TTL, a topic, a URL, an icon and data, when sent, then
    FCM receives one message for the token with the notification, string data (the URL
    included), Android's HIGH priority, ttl and collapse key, APNs' priority 10, expiration and
    collapse id, and web push's Urgency, TTL, Topic, icon and link; the result is FCM's name."""
    token = peer.register()
    before = int(time.time())

    result = await provider.send(
        push(
            url="https://shop.example/orders/42",
            icon="https://shop.example/icon.png",
            data={"orderId": "42"},
            ttl=3600,
            urgency="high",
            topic="order-42",
        ),
        device(token),
    )

    (sent,) = peer.wait_for(1)
    message = sent.message
    assert message["token"] == token
    assert message["notification"] == {"title": "Your order shipped", "body": "It arrives Tuesday"}
    assert message["data"] == {"orderId": "42", "url": "https://shop.example/orders/42"}
    assert message["android"] == {"priority": "HIGH", "ttl": "3600s", "collapse_key": "order-42"}
    apns = message["apns"]["headers"]
    assert (apns["apns-priority"], apns["apns-collapse-id"]) == ("10", "order-42")
    assert before + 3600 <= int(apns["apns-expiration"]) <= int(time.time()) + 3600
    assert message["webpush"] == {
        "headers": {"Urgency": "high", "TTL": "3600", "Topic": "order-42"},
        "notification": {"icon": "https://shop.example/icon.png"},
        "fcm_options": {"link": "https://shop.example/orders/42"},
    }
    assert (result.provider_message_id, result.provider, result.delivered) == (sent.name, "fcm", False)
    assert sent.name.startswith(f"projects/{peer.project_id}/messages/")


@pytest.mark.parametrize("urgency", ["normal", "low", "very-low"])
async def test_other_urgencies_are_normal_priority_without_ttl_or_collapse(
    peer: FcmPeer, provider: FcmProvider, urgency: str
) -> None:
    """Given a push below high urgency without TTL, topic or data, when sent, then Android gets
    NORMAL priority and APNs 5, and neither a TTL, a collapse key nor a data map is sent."""
    await provider.send(push(urgency=urgency), device(peer.register()))

    (sent,) = peer.wait_for(1)
    assert sent.message["android"] == {"priority": "NORMAL"}
    assert sent.message["apns"] == {"headers": {"apns-priority": "5"}}
    assert "data" not in sent.message
    assert sent.message["webpush"] == {"headers": {"Urgency": urgency}}


async def test_a_long_topic_collapses_under_a_digest(peer: FcmPeer, provider: FcmProvider) -> None:
    """Given a topic over 64 bytes, when sent, then the collapse key and id are a 64-character
    digest (the same for the same topic) and web push's Topic fits RFC 8030's 32 characters."""
    topic = "inventory/" + "ü" * 60
    target = device(peer.register())

    await provider.send(push(topic=topic), target)
    await provider.send(push(topic=topic), target)

    first, second = peer.wait_for(2)
    key = first.message["android"]["collapse_key"]
    assert len(key) == 64 and key == second.message["android"]["collapse_key"]
    assert first.message["apns"]["headers"]["apns-collapse-id"] == key
    assert len(first.message["webpush"]["headers"]["Topic"]) == 32


async def test_one_token_exchange_serves_a_burst_of_sends(peer: FcmPeer, provider: FcmProvider) -> None:
    """Given twenty pushes sent at once by a fresh provider, then exactly one OAuth2 exchange
    happens, with a correctly signed assertion, and every message carries its token."""
    tokens = [peer.register() for _ in range(20)]

    await asyncio.gather(*(provider.send(push(), device(t)) for t in tokens))

    assert peer.token_exchanges == 1
    (claims,) = peer.assertions
    assert claims["scope"] == FCM_SCOPE and claims["aud"] == peer.token_uri
    assert claims["exp"] - claims["iat"] == 3600
    assert len({m.access_token for m in peer.wait_for(20)}) == 1


async def test_the_access_token_is_renewed_before_it_expires(
    peer: FcmPeer, make_provider: Callable[..., FcmProvider]
) -> None:
    """Given access tokens issued for 15 minutes, when a push is sent, then again 599 s later,
    then the cached token serves both; 601 s after it was fetched (inside its last five
    minutes) a new token is fetched before sending."""
    offset = [-700.0]
    provider = make_provider(clock=lambda: time.time() + offset[0])
    peer.token_lifetime = 900
    target = device(peer.register())

    await provider.send(push(), target)
    offset[0] = -700 + 599
    await provider.send(push(), target)
    assert peer.token_exchanges == 1
    offset[0] = -700 + 601
    await provider.send(push(), target)

    assert peer.token_exchanges == 2
    first, second, third = peer.wait_for(3)
    assert first.access_token == second.access_token != third.access_token


async def test_a_401_refreshes_the_token_once_and_the_push_goes_out(
    peer: FcmPeer, provider: FcmProvider
) -> None:
    """Given an access token FCM stops accepting early, when a push is sent, then the provider
    fetches one new token and repeats the request, which succeeds."""
    target = device(peer.register())
    await provider.send(push(), target)
    peer.expire_tokens()

    await provider.send(push(), target)

    assert peer.token_exchanges == 2
    assert len(peer.wait_for(2)) == 2
    assert peer.refusals == [(401, "UNAUTHENTICATED")]


async def test_a_401_after_the_refresh_is_temporary_unauthorized(
    peer: FcmPeer, provider: FcmProvider
) -> None:
    """Given FCM answering 401 twice, when a push is sent, then one refresh is tried and the
    failure is temporary ``fcm_unauthorized`` (credentials to fix, a message to keep)."""
    peer.fail_next(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", times=2)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert caught.value.code == "fcm_unauthorized"
    assert peer.token_exchanges == 2


async def test_a_third_party_auth_error_is_temporary_without_a_refresh(
    peer: FcmPeer, provider: FcmProvider
) -> None:
    """Given FCM refusing the app's APNs credentials (401 THIRD_PARTY_AUTH_ERROR), when a push
    is sent, then it fails temporarily as ``fcm_unauthorized`` and our token is kept."""
    peer.fail_next(401, "UNAUTHENTICATED", "Auth error from APNS", error_code="THIRD_PARTY_AUTH_ERROR")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert caught.value.code == "fcm_unauthorized"
    assert peer.token_exchanges == 1


@pytest.mark.parametrize("how", ["unregistered", "never issued", "other project"])
async def test_a_token_fcm_no_longer_knows_is_gone(peer: FcmPeer, provider: FcmProvider, how: str) -> None:
    """Given a token that was unregistered (404 UNREGISTERED), never valid (400 INVALID_ARGUMENT
    about the token) or belongs to another project (403 SENDER_ID_MISMATCH), when a push is
    sent, then it fails as TargetGone ``push_token_gone``, naming a prefix of the token only."""
    if how == "unregistered":
        token = peer.register()
        peer.unregister(token)
    elif how == "never issued":
        token = "f" * 40 + ":APA91b" + "x" * 100
    else:
        token = peer.register(project_id="someone-elses-project")

    with pytest.raises(TargetGone) as caught:
        await provider.send(push(), device(token))

    assert caught.value.code == "push_token_gone"
    assert token not in caught.value.message and token[:8] in caught.value.message
    assert peer.messages == []


async def test_quota_exceeded_is_temporary_with_retry_after(peer: FcmPeer, provider: FcmProvider) -> None:
    """Given FCM answering 429 QUOTA_EXCEEDED with Retry-After: 30, when a push is sent, then
    the failure is temporary and asks for 30 s."""
    peer.fail_next(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", error_code="QUOTA_EXCEEDED", retry_after=30)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert (caught.value.code, caught.value.retry_after_ms) == ("fcm_quota_exceeded", 30_000)


@pytest.mark.parametrize(
    ("status", "name", "retry_after", "code"),
    [(503, "UNAVAILABLE", 5, "fcm_unavailable"), (500, "INTERNAL", None, "fcm_internal")],
)
async def test_server_errors_are_temporary(
    peer: FcmPeer, provider: FcmProvider, status: int, name: str, retry_after: int | None, code: str
) -> None:
    """Given FCM answering 503 UNAVAILABLE or 500 INTERNAL, when a push is sent, then the
    failure is temporary (with the Retry-After FCM gave)."""
    peer.fail_next(
        status, name, "The service is currently unavailable.", error_code=name, retry_after=retry_after
    )

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert caught.value.code == code
    assert caught.value.retry_after_ms == (retry_after * 1000 if retry_after else None)


async def test_an_invalid_message_is_permanent(peer: FcmPeer, provider: FcmProvider) -> None:
    """Given FCM refusing the message itself (400 INVALID_ARGUMENT, not about the token), when
    a push is sent, then the failure is permanent and keeps FCM's explanation."""
    peer.fail_next(400, "INVALID_ARGUMENT", "Message payload too big", error_code="INVALID_ARGUMENT")

    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert type(caught.value) is PermanentDeliveryError
    assert caught.value.code == "fcm_invalid_argument" and "too big" in caught.value.message


async def test_reserved_data_keys_fail_before_sending(peer: FcmPeer, provider: FcmProvider) -> None:
    """Given data with a key FCM reserves, when sent, then it fails permanently without a request."""
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push(data={"google.c.a.e": "1"}), device(peer.register()))

    assert caught.value.code == "fcm_reserved_data_key"
    assert peer.token_exchanges == 0


async def test_a_key_google_does_not_know_is_temporary_unauthorized(
    peer: FcmPeer, make_provider: Callable[..., FcmProvider], account: dict[str, Any]
) -> None:
    """Given a service account whose private key is not the one Google holds, when a push is
    sent, then the token exchange is refused (invalid_grant) and the failure is temporary
    ``fcm_unauthorized``, without the key in the message."""
    provider = make_provider({**account, "private_key": peer.service_account()["private_key"]})

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert caught.value.code == "fcm_unauthorized"
    assert "invalid_grant" in caught.value.message and "PRIVATE KEY" not in caught.value.message
    assert peer.messages == []


async def test_a_slow_api_times_out(peer: FcmPeer, make_provider: Callable[..., FcmProvider]) -> None:
    """Given an API that answers after a second, when a push is sent with a 300 ms timeout,
    then it fails temporarily as a timeout."""
    provider = make_provider(PUSH_TIMEOUT="300")
    peer.delay = 1.0

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(push(), device(peer.register()))

    assert caught.value.code == "fcm_timeout"


async def test_connection_refused_is_temporary(
    peer: FcmPeer, make_provider: Callable[..., FcmProvider], account: dict[str, Any]
) -> None:
    """Given nothing listening at the token endpoint, when a push is sent, then it fails
    temporarily as a connection failure."""
    unreachable = {**account, "token_uri": f"http://127.0.0.1:{closed_port()}/token"}

    with pytest.raises(TemporaryDeliveryError) as caught:
        await make_provider(unreachable).send(push(), device(peer.register()))

    assert caught.value.code == "fcm_connection"


async def test_missing_or_malformed_credentials_are_a_configuration_error(account: dict[str, Any]) -> None:
    """Given no service account, or one whose private key is not a key, when the provider is
    built, then ConfigError names the setting."""
    with pytest.raises(ConfigError, match="FCM_SERVICE_ACCOUNT"):
        FcmProvider(Settings.from_env({}))
    broken = {**account, "private_key": "not a key"}
    with pytest.raises(ConfigError, match="FCM_SERVICE_ACCOUNT"):
        FcmProvider(Settings.from_env({"FCM_SERVICE_ACCOUNT": json.dumps(broken)}))


@pytest.mark.parametrize(
    "message",
    [
        {"notification": {"title": "t"}},
        {"token": "a", "topic": "b"},
        {"token": "a", "data": {"count": 1}},
        {"token": "a", "data": {"from": "x"}},
        {"token": "a", "android": {"priority": "URGENT"}},
        {"token": "a", "android": {"ttl": 3600}},
        {"token": "a", "android": {"ttl": "1h"}},
        {"token": "a", "priority": "high"},
        {"token": "a", "notification": {"title": "t", "icon": "i"}},
    ],
)
async def test_the_peer_refuses_what_fcm_refuses(message: dict[str, Any]) -> None:
    """Given a message FCM's v1 API would refuse (no target or two, non-string or reserved
    data, a bad priority or TTL, unknown fields), then the peer refuses it too: the provider
    tests above prove something only because the peer is this strict."""
    with pytest.raises(Refusal) as caught:
        check_message({"message": message})

    assert caught.value.status == 400


TOKEN_VIOLATION = {
    "@type": "type.googleapis.com/google.rpc.BadRequest",
    "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
}


@pytest.mark.parametrize(
    ("status", "error", "kind", "code"),
    [
        (404, {"status": "NOT_FOUND", "message": "Not found."}, PermanentDeliveryError, "fcm_not_found"),
        (
            403,
            {"status": "PERMISSION_DENIED", "message": "denied"},
            TemporaryDeliveryError,
            "fcm_unauthorized",
        ),
        (502, None, TemporaryDeliveryError, "fcm_http_502"),
        (400, {"status": "INVALID_ARGUMENT", "details": [TOKEN_VIOLATION]}, TargetGone, "push_token_gone"),
    ],
)
async def test_answer_error_reads_googles_error_document(
    status: int, error: dict[str, Any] | None, kind: type[Exception], code: str
) -> None:
    """Given answers the peer does not produce (a 404 without UNREGISTERED, a permission error,
    a proxy's 502 page, a field violation on the token), then each maps as documented."""
    content = json.dumps({"error": error}).encode() if error else b"<html>Bad Gateway</html>"

    mapped = answer_error(httpx.Response(status, content=content), "t" * 40)

    assert type(mapped) is kind and mapped.code == code


async def test_classify_maps_transport_failures() -> None:
    """Given failures without an answer, then all are temporary, timeouts told apart."""
    assert classify(TimeoutError()).code == "fcm_timeout"
    assert classify(httpx.ReadTimeout("slow")).code == "fcm_timeout"
    assert classify(httpx.ConnectError("refused")).code == "fcm_connection"
    assert classify(httpx.RemoteProtocolError("GOAWAY")).code == "fcm_connection"
