"""``/api/webhooks``: endpoint management over real HTTP, the delivery log, test sends,
replay and recovery, and that an endpoint's secret is only ever shown on create and on
regenerate."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import WebhookConfiguration
from shared.db.session import session_scope
from shared.webhooks.headers import MASK
from tests.conftest import SERVER_KEY, USER_TOKEN_SECRET, Fleet, final_status
from tests.gateway.server import LiveServer
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.webhook_events import emit
from workers.webhook.records import RESPONSE_EXCERPT_BYTES

BASE = "/api/webhooks/configurations"


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    with (
        LiveServer(create_app(settings)) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {SERVER_KEY}"}, timeout=30
        ) as client,
    ):
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def create(api: httpx.Client, receiver: WebhookReceiver, **fields: Any) -> dict[str, Any]:
    response = api.post(BASE, json={"url": receiver.url, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    receiver.set_secret(body["secret"])
    return body


def test_crud_round_trip(api: httpx.Client, receiver: WebhookReceiver, settings: Settings) -> None:
    """Given a created endpoint, then it can be listed, read, updated and deleted, the secret
    appears only in the create answer, and the database holds it encrypted."""
    created = create(
        api,
        receiver,
        description="orders",
        eventTypes=["order.created", "order.*"],
        headers={"X-Tenant": "acme"},
        rateLimitPerSecond=10,
        retryScheduleMs=[1000, 5000],
        ownerEmail="ops@example.com",
    )
    endpoint_id = created["id"]
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) >= len("whsec_") + 32
    assert created["eventTypes"] == ["order.created", "order.*"]
    assert created["active"] is True
    with session_scope(settings.database_url) as session:
        stored = session.get(WebhookConfiguration, endpoint_id)
        assert stored is not None and stored.secret.startswith("fernet:") and secret not in stored.secret

    listed = api.get(BASE)
    read = api.get(f"{BASE}/{endpoint_id}")
    updated = api.patch(f"{BASE}/{endpoint_id}", json={"description": "all orders", "active": False})

    assert listed.status_code == 200 and [e["id"] for e in listed.json()["items"]] == [endpoint_id]
    assert read.status_code == 200 and read.json()["headers"] == {"X-Tenant": MASK}
    assert updated.status_code == 200
    assert updated.json()["description"] == "all orders" and updated.json()["active"] is False
    assert updated.json()["eventTypes"] == ["order.created", "order.*"]
    for response in (listed, read, updated):
        assert secret not in response.text
        assert "secret" not in json.dumps(response.json()).replace("previousSecretExpiresAt", "")

    assert api.delete(f"{BASE}/{endpoint_id}").status_code == 204
    assert api.get(f"{BASE}/{endpoint_id}").status_code == 404
    assert api.delete(f"{BASE}/{endpoint_id}").status_code == 404


#: A receiver's credential, sent as a custom header.
BEARER = "Bearer rcv_live_4f1c9a7e2b3d5f60a8c1"


def test_custom_headers_are_secrets_at_rest_and_in_answers(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an endpoint with an Authorization header for its receiver, then the database
    holds the value encrypted, every answer (create, read, list, update, the delivery log)
    shows only its name and a masked value, and the receiver still gets the real value."""
    created = create(api, receiver, headers={"Authorization": BEARER, "X-Tenant": "acme"})
    endpoint_id = created["id"]
    fleet(settings, [Channel.WEBHOOK])

    answers = [
        created,
        api.get(f"{BASE}/{endpoint_id}").json(),
        api.get(BASE).json()["items"][0],
        api.patch(f"{BASE}/{endpoint_id}", json={"description": "renamed"}).json(),
    ]
    tested = api.post(f"{BASE}/{endpoint_id}/test").json()
    logged = api.get(f"{BASE}/{endpoint_id}/logs").json()["items"]

    masked = {"Authorization": MASK + BEARER[-4:], "X-Tenant": MASK}
    assert [a["headers"] for a in answers] == [masked] * 4
    assert tested["attempt"]["requestHeaders"]["authorization"] == "[redacted]"
    assert tested["attempt"]["requestHeaders"]["x-tenant"] == MASK
    for text in [json.dumps(answers), json.dumps(tested), json.dumps(logged)]:
        assert BEARER.split()[1] not in text and "acme" not in text
    with session_scope(settings.database_url) as session:
        stored = session.get(WebhookConfiguration, endpoint_id)
        assert stored is not None and set(stored.headers) == {"Authorization", "X-Tenant"}
        assert all(v.startswith("fernet:") for v in stored.headers.values())
        assert "rcv_live" not in json.dumps(stored.headers) and "acme" not in json.dumps(stored.headers)
    delivery = receiver.deliveries[0]
    assert delivery.headers["authorization"] == BEARER and delivery.headers["x-tenant"] == "acme"


def test_headers_sent_back_masked_keep_their_values(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a client that reads an endpoint and sends its headers back with one added (as a
    form showing the current values would), then the masked values keep what they stood for
    and the new header is stored like the others."""
    endpoint_id = create(api, receiver, headers={"Authorization": BEARER, "X-Tenant": "acme"})["id"]
    shown = api.get(f"{BASE}/{endpoint_id}").json()["headers"]

    updated = api.put(
        f"{BASE}/{endpoint_id}", json={"url": receiver.url, "headers": {**shown, "X-Region": "eu-west"}}
    )
    fleet(settings, [Channel.WEBHOOK])
    tested = api.post(f"{BASE}/{endpoint_id}/test")

    assert updated.status_code == 200 and updated.json()["headers"] == {**shown, "X-Region": MASK}
    assert tested.status_code == 200 and tested.json()["attempt"]["success"] is True
    sent = receiver.deliveries[0].headers
    assert (sent["authorization"], sent["x-tenant"], sent["x-region"]) == (BEARER, "acme", "eu-west")


def test_regenerate_secret_shows_the_new_one_once(api: httpx.Client, receiver: WebhookReceiver) -> None:
    created = create(api, receiver)

    regenerated = api.post(f"{BASE}/{created['id']}/regenerate-secret")

    assert regenerated.status_code == 200
    body = regenerated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    expires = datetime.fromisoformat(body["previousSecretExpiresAt"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    read = api.get(f"{BASE}/{created['id']}")
    assert body["secret"] not in read.text and created["secret"] not in read.text


UNKNOWN = "6f0c1b9e-0000-4000-8000-000000000000"  # well formed, never created (fixed: test ids must not vary)

#: (method, path, body, expected status, field the error names)
BAD_REQUESTS: list[tuple[str, str, Any, int, str | None]] = [
    ("POST", BASE, {}, 422, "url"),
    ("POST", BASE, {"url": "ftp://example.com/x"}, 422, "url"),
    ("POST", BASE, {"url": "https://user:pw@example.com/"}, 422, "url"),
    ("POST", BASE, {"url": "https://example.com/", "eventTypes": "order.created"}, 422, "eventTypes"),
    ("POST", BASE, {"url": "https://example.com/", "eventTypes": ["bad type!"]}, 422, "eventTypes.0"),
    ("POST", BASE, {"url": "https://example.com/", "headers": {"webhook-id": "x"}}, 422, "headers"),
    ("POST", BASE, {"url": "https://example.com/", "headers": {"X-A": "a\r\nb: c"}}, 422, "headers"),
    ("POST", BASE, {"url": "https://example.com/", "headers": {"X-A": "a\u2028b: c"}}, 422, "headers"),
    ("POST", BASE, {"url": "https://example.com/", "headers": {"X-A": "a\x0bb"}}, 422, "headers"),
    ("POST", BASE, {"url": "https://example.com/", "headers": {"X-A": "a\x7f"}}, 422, "headers"),
    ("POST", BASE, {"url": "https://example.com/", "headers": {"bad name": "v"}}, 422, "headers"),
    ("POST", BASE, {"url": "https://example.com/", "headers": {"X-A": "fernet:abc"}}, 422, "headers"),
    ("POST", BASE, {"url": "https://example.com/", "rateLimitPerSecond": 0}, 422, "rateLimitPerSecond"),
    ("POST", BASE, {"url": "https://example.com/", "retryScheduleMs": [-1]}, 422, "retryScheduleMs"),
    ("POST", BASE, {"url": "https://example.com/", "maxRetries": 99}, 422, "maxRetries"),
    ("POST", BASE, {"url": "https://example.com/", "ownerEmail": "nope"}, 422, "ownerEmail"),
    ("POST", BASE, {"url": "https://example.com/", "secret": "whsec_mine"}, 422, "secret"),
    ("POST", BASE, ["not", "an", "object"], 400, None),
    ("POST", BASE, {"url": "http://127.0.0.1:99999/hook"}, 422, "url"),
    ("POST", BASE, {"url": "http://example.com:80:81/hook"}, 422, "url"),
    ("GET", f"{BASE}/{UNKNOWN}", None, 404, None),
    ("PUT", f"{BASE}/{UNKNOWN}", {"url": "https://example.com/hook"}, 404, None),
    ("PATCH", f"{BASE}/{UNKNOWN}", {"description": "x"}, 404, None),
    ("DELETE", f"{BASE}/{UNKNOWN}", None, 404, None),
    ("GET", f"{BASE}/{UNKNOWN}/logs", None, 404, None),
    ("POST", f"{BASE}/{UNKNOWN}/test", None, 404, None),
    ("POST", f"{BASE}/{UNKNOWN}/regenerate-secret", None, 404, None),
    ("POST", f"{BASE}/{UNKNOWN}/recover", {"since": "2026-01-01T00:00:00Z"}, 404, None),
    ("POST", f"/api/webhooks/deliveries/{UNKNOWN}/replay", None, 404, None),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), BAD_REQUESTS)
def test_bad_requests_are_refused(
    api: httpx.Client, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    response = api.request(method, path, json=body) if body is not None else api.request(method, path)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert field in [d.get("field") for d in error["details"]]


@pytest.mark.parametrize(
    ("suffix", "body", "field"),
    [
        ("", {"url": "gopher://x"}, "url"),
        ("", {"url": "https://example.com:65536/hook"}, "url"),
        ("", {"url": "https://example.com:8o/hook"}, "url"),
        ("", {"active": None}, "active"),
        ("/logs?status=weird", None, "status"),
        ("/logs?limit=0", None, "limit"),
        ("/logs?limit=abc", None, "limit"),
        ("/logs?cursor=xyz", None, "cursor"),
        ("/regenerate-secret", {"gracePeriodMs": -5}, "gracePeriodMs"),
        ("/recover", {"since": "yesterday"}, "since"),
        ("/recover", {"since": "2026-01-01T00:00:00"}, "since"),
    ],
)
def test_invalid_fields_on_an_existing_endpoint(
    api: httpx.Client, receiver: WebhookReceiver, suffix: str, body: Any, field: str
) -> None:
    endpoint_id = create(api, receiver)["id"]
    method = "GET" if suffix.startswith("/logs") else ("PUT" if suffix == "" else "POST")

    response = api.request(method, f"{BASE}/{endpoint_id}{suffix}", json=body)

    assert response.status_code == 422, response.text
    assert field in [d.get("field") for d in response.json()["error"]["details"]]


def test_private_addresses_are_refused_at_save_time(make_settings: Callable[..., Settings]) -> None:
    """Given WEBHOOK_ALLOW_PRIVATE_NETWORKS=false, then saving a URL naming loopback or the
    metadata service is refused with the reason, on create and on update."""
    settings = make_settings(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")
    auth = {"Authorization": f"Bearer {SERVER_KEY}"}
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, headers=auth) as api:
        metadata = api.post(BASE, json={"url": "http://169.254.169.254/latest/meta-data"})
        loopback = api.post(BASE, json={"url": "http://[::ffff:127.0.0.1]:8080/hook"})
        public = api.post(BASE, json={"url": "https://93.184.216.34/hook"})
        moved = api.put(f"{BASE}/{public.json()['id']}", json={"url": "http://10.0.0.5/hook"})

    assert metadata.status_code == 422 and "cloud metadata" in metadata.json()["error"]["message"]
    assert loopback.status_code == 422 and "loopback" in loopback.json()["error"]["message"]
    assert public.status_code == 201
    assert moved.status_code == 422 and "private network" in moved.json()["error"]["message"]


def test_a_deployment_refuses_internal_receivers_unless_told_otherwise(
    base_env: dict[str, str], receiver: WebhookReceiver
) -> None:
    """Given real services configured and WEBHOOK_ALLOW_PRIVATE_NETWORKS unset, then an
    endpoint naming an internal service (here one on loopback) cannot be saved, so neither
    ``.../test`` nor its delivery log can read that service's answers."""
    env = {k: v for k, v in base_env.items() if k != "WEBHOOK_ALLOW_PRIVATE_NETWORKS"}
    settings = Settings.from_env(env)
    auth = {"Authorization": f"Bearer {SERVER_KEY}"}
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, headers=auth) as api:
        refused = api.post(BASE, json={"url": receiver.url})

    assert refused.status_code == 422, refused.text
    assert "loopback" in refused.json()["error"]["message"]
    assert receiver.deliveries == []


def test_only_the_start_of_a_receivers_answer_is_shown_and_kept(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a receiver answering with a large body, then ``.../test`` and the delivery log
    show only its first RESPONSE_EXCERPT_BYTES: enough to see why it failed, too little to
    read a service through the endpoint."""
    endpoint_id = create(api, receiver)["id"]
    fleet(settings, [Channel.WEBHOOK])
    body = ("a" * 40_000 + "the-rest-of-the-answer" + "b" * 20_000).encode()
    receiver.respond_next(500, body=body)

    tested = api.post(f"{BASE}/{endpoint_id}/test")
    logged = api.get(f"{BASE}/{endpoint_id}/logs").json()["items"]

    assert tested.status_code == 200, tested.text
    shown = tested.json()["attempt"]["responseBody"]
    assert shown == "a" * RESPONSE_EXCERPT_BYTES
    assert [a["responseBody"] for a in logged] == [shown]


def test_user_tokens_and_missing_keys_are_refused(settings: Settings) -> None:
    token = jwt.encode(
        {"sub": "user-1", "exp": datetime.now(UTC) + timedelta(minutes=5)}, USER_TOKEN_SECRET, "HS256"
    )
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url) as client:
        assert client.get(BASE).status_code == 401
        assert client.get(BASE, headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_the_test_endpoint_answers_with_the_attempts_outcome(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a running fleet, then ``POST .../test`` sends a signed ``webhook.test`` event and
    answers with the attempt: its status, and a failure's reason when the receiver fails."""
    endpoint_id = create(api, receiver)["id"]
    fleet(settings, [Channel.WEBHOOK])

    ok = api.post(f"{BASE}/{endpoint_id}/test")
    receiver.respond_next(500, body=b"down for maintenance")
    failed = api.post(f"{BASE}/{endpoint_id}/test")

    assert ok.status_code == 200, ok.text
    assert ok.json()["attempt"]["success"] is True and ok.json()["attempt"]["responseStatus"] == 200
    delivery = receiver.deliveries[0]
    assert delivery.verified and delivery.json["type"] == "webhook.test"
    assert delivery.headers["webhook-id"] == ok.json()["messageId"]
    attempt = failed.json()["attempt"]
    assert (attempt["success"], attempt["responseStatus"], attempt["errorClass"]) == (False, 500, "http_500")
    assert attempt["responseBody"] == "down for maintenance"
    assert len(receiver.deliveries) == 2  # a test send is not retried


def test_logs_are_paged_by_cursor_and_filtered_by_status(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given three attempts (two failures then a success), then pages of two follow the
    cursor newest first, and ``status`` filters them; no secret appears in the log."""
    created = create(api, receiver, retryScheduleMs=[50, 50])
    endpoint_id = created["id"]
    receiver.respond_next(503, times=2)
    fleet(settings, [Channel.WEBHOOK])
    (message_id,) = emit(settings, "order.created", {"orderId": "o-9"})
    assert final_status(NotificationService(settings), message_id)["status"] == "delivered"

    first = api.get(f"{BASE}/{endpoint_id}/logs", params={"limit": 2}).json()
    second = api.get(f"{BASE}/{endpoint_id}/logs", params={"limit": 2, "cursor": first["nextCursor"]}).json()
    failed = api.get(f"{BASE}/{endpoint_id}/logs", params={"status": "failed"}).json()
    succeeded = api.get(f"{BASE}/{endpoint_id}/logs", params={"status": "succeeded"}).json()
    by_code = api.get(f"{BASE}/{endpoint_id}/logs", params={"status": "503"}).json()

    assert [a["attempt"] for a in first["items"]] == [3, 2]
    assert [a["attempt"] for a in second["items"]] == [1] and second["nextCursor"] is None
    assert [a["attempt"] for a in failed["items"]] == [2, 1]
    assert [a["attempt"] for a in succeeded["items"]] == [3]
    assert len(by_code["items"]) == 2
    attempt = first["items"][0]
    assert attempt["messageId"] == message_id and attempt["durationMs"] is not None
    assert json.loads(attempt["requestBody"])["data"] == {"orderId": "o-9"}
    assert attempt["requestHeaders"]["webhook-signature"] == "[redacted]"
    assert created["secret"] not in json.dumps([first, second])


def test_a_failed_delivery_can_be_replayed(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a delivery that failed (400), when it is replayed, then it is sent once more with
    the same webhook-id and succeeds; replaying one still on its way is refused with 409."""
    create(api, receiver)
    receiver.respond_next(400)
    fleet(settings, [Channel.WEBHOOK])
    (message_id,) = emit(settings, "order.created", {"n": 1})
    service = NotificationService(settings)
    assert final_status(service, message_id)["status"] == "failed"

    replayed = api.post(f"/api/webhooks/deliveries/{message_id}/replay")

    assert replayed.status_code == 202
    assert final_status(service, message_id)["status"] == "delivered"
    assert receiver.count(message_id) == 2
    assert all(d.verified for d in receiver.deliveries)


def test_replaying_a_delivery_in_progress_is_refused(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings
) -> None:
    create(api, receiver)
    (message_id,) = emit(settings, "order.created", {"n": 1})  # no fleet: stays queued

    response = api.post(f"/api/webhooks/deliveries/{message_id}/replay")

    assert response.status_code == 409 and response.json()["error"]["code"] == "delivery_in_progress"


def test_recover_replays_every_failure_since_a_time(
    api: httpx.Client, receiver: WebhookReceiver, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given two deliveries that failed during a receiver outage, when the endpoint is
    recovered since before the outage, then both are sent again and succeed."""
    endpoint_id = create(api, receiver)["id"]
    since = datetime.now(UTC) - timedelta(seconds=1)
    receiver.respond_next(400, times=2)
    fleet(settings, [Channel.WEBHOOK])
    service = NotificationService(settings)
    ids = emit(settings, "order.created", {"n": 1}) + emit(settings, "order.created", {"n": 2})
    assert [final_status(service, i)["status"] for i in ids] == ["failed", "failed"]
    assert len(receiver.deliveries) == 2

    recovered = api.post(f"{BASE}/{endpoint_id}/recover", json={"since": since.isoformat()})
    later = api.post(f"{BASE}/{endpoint_id}/recover", json={"since": datetime.now(UTC).isoformat()})

    assert recovered.status_code == 202 and sorted(recovered.json()["messageIds"]) == sorted(ids)
    assert later.json()["replayed"] == 0
    assert [final_status(service, i)["status"] for i in ids] == ["delivered", "delivered"]
