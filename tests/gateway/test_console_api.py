"""The API the operator console stands on, against the real gateway, RabbitMQ and PostgreSQL:
dead letters listed, replayed and purged by id or all; the fleet's queues; a message's
story (payload with credentials masked, attempts) and replay; a template previewed as it is
typed, with SMS segments; and the console page itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from producer.gateway.app import create_app
from producer.sms_segments import segments
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog, utcnow
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, WEBHOOK_SECRET, Fleet, Queues
from tests.gateway.server import LiveServer
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until

SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with (
        LiveServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=SERVER, timeout=20) as c,
    ):
        yield c


def send_webhook(client: httpx.Client, url: str, payload: dict[str, object]) -> str:
    answer = client.post("/api/messages/webhook", json={"url": url, "payload": payload})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def status_of(client: httpx.Client, message_id: str) -> str:
    return str(client.get(f"/api/messages/{message_id}").json()["status"])


def dead(client: httpx.Client, channel: str = "webhook") -> list[str]:
    answer = client.get(f"/api/dead-letters/{channel}")
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def test_dead_letters_are_listed_replayed_by_id_and_purged(
    settings: Settings, fleet: Callable[..., Fleet], client: httpx.Client
) -> None:
    """Given two webhooks that ran out of retries, the list shows both with their failure;
    replaying one by id delivers it and leaves the other; purging drops the other, whose
    message keeps its failure."""
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.respond_next(503, times=6)
        fleet(settings, [Channel.WEBHOOK])
        first = send_webhook(client, receiver.url, {"n": 1})
        second = send_webhook(client, receiver.url, {"n": 2})
        wait_until(
            lambda: sorted(dead(client)) == sorted([first, second]), timeout=20, message="not dead-lettered"
        )

        listed = {item["id"]: item for item in client.get("/api/dead-letters/webhook").json()["items"]}
        assert listed[first]["status"] == "failed"
        assert listed[first]["attempts"] == 3
        assert "503" in listed[first]["lastError"]
        assert listed[first]["failedAt"]

        replayed = client.post("/api/dead-letters/webhook/replay", json={"ids": [first]})
        assert replayed.json() == {"count": 1}
        wait_until(
            lambda: status_of(client, first) == "delivered", timeout=20, message="replay not delivered"
        )
        assert dead(client) == [second]

        purged = client.post("/api/dead-letters/webhook/purge", json={})
        assert purged.json() == {"count": 1}
        assert dead(client) == []
        assert status_of(client, second) == "failed"


def test_dead_letter_requests_are_checked(settings: Settings, client: httpx.Client) -> None:
    assert client.get("/api/dead-letters/fax").status_code == 404
    assert client.get("/api/dead-letters/in-app").status_code == 200
    for bad in ({"ids": "m1"}, {"ids": [1]}, {"everything": True}):
        answer = client.post("/api/dead-letters/email/replay", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"]["code"] == "validation_error"
    assert client.get("/api/dead-letters/email?limit=0").status_code == 422
    assert client.get("/api/dead-letters/email", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_fleet_shows_depths_and_consumers(
    settings: Settings, fleet: Callable[..., Fleet], client: httpx.Client
) -> None:
    """Given an SMS waiting with no SMS worker and an in-app worker running, the fleet says so."""
    assert (
        client.post("/api/messages/sms", json={"to": "+14155550100", "message": "waiting"}).status_code == 202
    )
    fleet(settings, [Channel.IN_APP])
    answer = client.get("/api/fleet").json()
    queues = {q["queue"]: q for q in answer["queues"]}
    assert answer["broker"] == "rabbitmq"
    assert queues["sms"]["depth"] == 1 and queues["sms"]["consumers"] == 0
    assert queues["in_app"]["consumers"] >= 1
    assert queues["email"]["deadLettered"] == 0
    assert "events" in queues


def test_a_story_masks_credentials_and_shows_attempts_and_a_webhook_replays(
    settings: Settings, fleet: Callable[..., Fleet], client: httpx.Client
) -> None:
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.respond_next(500, body=b"try later")
        fleet(settings, [Channel.WEBHOOK])
        message_id = send_webhook(
            client,
            receiver.url,
            {"order": 7, "apiKey": "sk_live_0123456789abcdef", "user": {"password": "hunter2"}},
        )
        wait_until(lambda: status_of(client, message_id) == "delivered", timeout=20, message="not delivered")

        story = client.get(f"/api/messages/{message_id}/story").json()
        body = story["payload"]["payload"]
        assert body["order"] == 7
        assert body["apiKey"] == "••••cdef" and body["user"]["password"] == "••••"
        assert "hunter2" not in str(story) and "sk_live_0123456789abcdef" not in str(story)
        assert [(a["attempt"], a["responseStatus"]) for a in story["attempts"]] == [(2, 200), (1, 500)]
        assert story["attempts"][1]["responseBody"] == "try later"

        replayed = client.post(f"/api/messages/{message_id}/replay")
        assert replayed.status_code == 202 and replayed.json() == {"id": message_id, "status": "queued"}
        wait_until(lambda: len(receiver.deliveries) == 3, timeout=20, message="replay not sent")
    assert client.get("/api/messages/nope/story").status_code == 404
    assert client.post("/api/messages/nope/replay").status_code == 404


def test_only_a_failed_email_is_replayed(settings: Settings, client: httpx.Client, queues: Queues) -> None:
    """A failed email gets a fresh round (queued, published); a sent one is never sent twice."""
    now = utcnow()
    with system_scope(settings.database_url) as session:
        for message_id, status in (("m-failed", "failed"), ("m-sent", "sent")):
            session.add(
                NotificationLog(
                    id=message_id,
                    channel="email",
                    status=status,
                    recipient="ann@example.com",
                    payload={"to": "ann@example.com", "subject": "s", "text": "t"},
                    attempts=3,
                    max_attempts=3,
                    created_at=now,
                    updated_at=now,
                    completed_at=now,
                )
            )
    refused = client.post("/api/messages/m-sent/replay")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_replayable"

    assert client.post("/api/messages/m-failed/replay").status_code == 202
    view = client.get("/api/messages/m-failed").json()
    assert view["status"] == "queued" and view["maxAttempts"] > 3
    assert queues.depth("email") == 1


def test_a_draft_template_previews_without_being_saved(settings: Settings, client: httpx.Client) -> None:
    sms = client.post(
        "/api/templates/preview",
        json={
            "key": "code",
            "channel": "sms",
            "sms": "Hi {{name}}, that is 5€",
            "sampleData": {"name": "Ann"},
        },
    )
    assert sms.status_code == 200, sms.text
    assert sms.json()["sms"] == "Hi Ann, that is 5€"
    assert sms.json()["segments"] == {"encoding": "GSM-7", "units": 19, "count": 1}

    email = client.post(
        "/api/templates/preview",
        json={
            "key": "welcome",
            "channel": "email",
            "subject": "Welcome, {{name}}",
            "html": "<p>Hi {{name}}</p>",
            "sampleData": {"name": "Ann"},
            "data": {"name": "<Bob>"},
        },
    )
    assert email.json()["subject"] == "Welcome, <Bob>" and email.json()["html"] == "<p>Hi &lt;Bob&gt;</p>"

    broken = client.post(
        "/api/templates/preview",
        json={
            "key": "welcome",
            "channel": "email",
            "subject": "Hi",
            "text": "line one\n{{#if x}}never closed",
        },
    )
    assert broken.status_code == 400
    [detail] = broken.json()["error"]["details"]
    assert detail["part"] == "text" and detail["line"] == 2
    assert client.get("/api/templates").json()["items"] == []


def test_sms_segments_as_carriers_count_them() -> None:
    assert segments("").count == 0
    assert segments("a" * 160).count == 1 and segments("a" * 161).count == 2
    assert segments("a" * 306).count == 2 and segments("a" * 307).count == 3
    assert segments("€" * 80).units == 160 and segments("€" * 81).count == 2
    assert segments("ж" * 70) == segments("ж" * 70).__class__("UCS-2", 70, 1)
    assert segments("ж" * 71).count == 2 and segments("ж" * 134).count == 2 and segments("ж" * 135).count == 3
    assert segments("👍" * 35).units == 70


def test_the_console_page_is_served_under_its_own_policy(client: httpx.Client) -> None:
    page = client.get("/console", headers={"Authorization": ""})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
        and "connect-src 'self'" in policy
    )
    assert page.headers["x-frame-options"] == "DENY"
    assert "set-cookie" not in page.headers
    for asset in ("/console.js", "/console.css"):
        assert client.get(asset).status_code == 200


def test_an_endpoint_shows_its_circuit_breaker_as_the_workers_share_it(
    settings: Settings, client: httpx.Client
) -> None:
    """The gateway reads the breaker the webhook workers keep in Redis: closed, then open
    with the time to the probe once the threshold of failures in a row is reached."""
    from workers.delivery.breaker import build_breaker

    created = client.post("/api/webhooks/configurations", json={"url": "https://example.com/hooks"}).json()
    path = f"/api/webhooks/configurations/{created['id']}"
    assert client.get(path).json()["circuit"] == {
        "state": "closed",
        "consecutiveFailures": 0,
        "retryInMs": None,
    }

    webhooks = settings.webhooks
    breaker = build_breaker(
        settings, threshold=webhooks.breaker_threshold, cooldown_ms=webhooks.breaker_cooldown_ms
    )
    for _ in range(webhooks.breaker_threshold):
        breaker.record(created["id"], ok=False)
    shown = client.get(path).json()["circuit"]
    assert shown["state"] == "open" and shown["consecutiveFailures"] == webhooks.breaker_threshold
    assert 0 < shown["retryInMs"] <= webhooks.breaker_cooldown_ms
    breaker.record(created["id"], ok=True)
    assert client.get(path).json()["circuit"]["state"] == "closed"
