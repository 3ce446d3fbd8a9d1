"""``/api/messages``: what the gateway accepts, what it refuses, and that a refusal enqueues
nothing (the real RabbitMQ queues stay empty and no row is written)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import ROTATED_KEY, SERVER_KEY, USER_TOKEN_SECRET, Queues
from tests.gateway.server import LiveServer

VALID: dict[str, dict[str, Any]] = {
    "email": {
        "to": "user@example.com",
        "subject": "Welcome to KAI",
        "text": "Thanks!",
        "html": "<p>Thanks!</p>",
    },
    "sms": {"to": "+14155550100", "message": "Your code is 123456"},
    "webhook": {"url": "https://example.com/hook", "payload": {"event": "order.created", "data": {"id": 1}}},
    "in-app": {"userId": "user-123", "title": "New Message", "message": "Hi", "type": "info"},
    "push": {
        "userId": "user-123",
        "title": "Your order shipped",
        "body": "It arrives Friday",
        "url": "/orders/1",
    },
    "chat": {"service": "slack", "to": "C0123ABC", "text": "Deploy 42 finished"},
}

TEAMS_CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "hi"}]}

BIG = "x" * (256 * 1024 + 1)

#: (channel, body, expected status, field the error names)
BAD_INPUT: list[tuple[str, Any, int, str | None]] = [
    ("email", {"subject": "s", "text": "t"}, 422, "to"),
    ("email", {**VALID["email"], "to": "not-an-address"}, 422, "to"),
    ("email", {**VALID["email"], "to": "a@b.com\r\nBcc: victim@example.com"}, 422, "to"),
    ("email", {**VALID["email"], "subject": "hi\r\nBcc: victim@example.com"}, 422, "subject"),
    ("email", {"to": "user@example.com", "subject": "no body"}, 422, None),
    ("email", {**VALID["email"], "to": 42}, 422, "to"),
    ("email", {**VALID["email"], "text": BIG}, 413, None),
    ("email", {**VALID["email"], "surprise": True}, 422, "surprise"),
    ("sms", {**VALID["sms"], "to": "4155550100"}, 422, "to"),
    ("sms", {**VALID["sms"], "to": "+1 555"}, 422, "to"),
    ("sms", {"to": "+14155550100"}, 422, "message"),
    ("sms", {**VALID["sms"], "message": ["not", "text"]}, 422, "message"),
    ("webhook", {**VALID["webhook"], "url": "ftp://example.com/x"}, 422, "url"),
    ("webhook", {**VALID["webhook"], "url": "javascript:alert(1)"}, 422, "url"),
    ("webhook", {**VALID["webhook"], "url": "https://user:pw@example.com/"}, 422, "url"),
    ("webhook", {**VALID["webhook"], "url": "http://127.0.0.1:99999/"}, 422, "url"),
    ("webhook", {**VALID["webhook"], "url": "http://example.com:80:81/"}, 422, "url"),
    ("webhook", {**VALID["webhook"], "url": "http://example.com:0/"}, 422, "url"),
    ("webhook", {**VALID["webhook"], "url": f"http://{'a' * 64}.example.com/"}, 422, "url"),
    ("in-app", {**VALID["in-app"], "actionUrl": "https://example.com:99999/"}, 422, "actionUrl"),
    ("webhook", {**VALID["webhook"], "payload": "a string"}, 422, "payload"),
    ("webhook", {"url": "https://example.com/hook"}, 422, "payload"),
    ("webhook", {**VALID["webhook"], "payload": {"blob": BIG}}, 413, None),
    ("in-app", {**VALID["in-app"], "userId": None}, 422, "userId"),
    ("in-app", {**VALID["in-app"], "type": "shouting"}, 422, "type"),
    ("in-app", {**VALID["in-app"], "actionUrl": "//evil.example/phish"}, 422, "actionUrl"),
    ("in-app", {**VALID["in-app"], "title": ""}, 422, "title"),
    # A flag only a JSON boolean sets: "yes" or 1 is a mistake, not a yes.
    ("email", {**VALID["email"], "transactional": "yes"}, 422, "transactional"),
    (
        "email",
        {"to": "user@example.com", "template": "welcome", "transactional": "yes"},
        422,
        "transactional",
    ),
    ("sms", {**VALID["sms"], "transactional": 1}, 422, "transactional"),
    ("push", {**VALID["push"], "userId": None}, 422, "userId"),
    ("push", {"userId": "u1", "body": "no title"}, 422, "title"),
    ("push", {**VALID["push"], "title": "two\nlines"}, 422, "title"),
    ("push", {**VALID["push"], "urgency": "asap"}, 422, "urgency"),
    ("push", {**VALID["push"], "ttl": 2_419_201}, 422, "ttl"),
    ("push", {**VALID["push"], "url": "//evil.example/phish"}, 422, "url"),
    ("push", {**VALID["push"], "data": {"nested": {"not": "flat"}}}, 422, "data"),
    ("chat", {**VALID["chat"], "service": "irc"}, 422, "service"),
    ("chat", {"service": "slack", "text": "nowhere to go"}, 422, None),
    ("chat", {**VALID["chat"], "to": "not a channel"}, 422, "to"),
    ("chat", {"service": "teams", "to": "C0123ABC", "text": "Teams has no channels by id"}, 422, None),
    ("chat", {**VALID["chat"], "webhookUrl": "https://hooks.slack.com/services/T/B/X"}, 422, None),
    ("chat", {"service": "teams", "webhookUrl": "ftp://example.com/x", "text": "hi"}, 422, "webhookUrl"),
    ("chat", {**VALID["chat"], "card": TEAMS_CARD}, 422, None),
    (
        "chat",
        {"service": "teams", "webhookUrl": "https://example.com/w", "text": "hi", "card": {"type": "x"}},
        422,
        None,
    ),
    ("chat", {**VALID["chat"], "blocks": [{"type": "section"}] * 51}, 422, "blocks"),
    ("chat", {**VALID["chat"], "text": ""}, 422, "text"),
    # A user with no Slack id or webhook among their contacts: nowhere to send it.
    ("chat", {"service": "slack", "userId": "user-without-contacts", "text": "hi"}, 422, "userId"),
    ("in-app", {**VALID["in-app"], "transactional": None}, 422, "transactional"),
]


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c


def rows() -> int:
    from shared.config import get_settings

    with system_scope(get_settings().database_url) as session:
        return int(session.scalar(select(func.count()).select_from(NotificationLog)) or 0)


def assert_error_shape(body: dict[str, Any], code: str | None = None) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize(("channel", "body", "status", "field"), BAD_INPUT)
def test_bad_input_is_refused_and_nothing_is_enqueued(
    client: httpx.Client, queues: Queues, channel: str, body: Any, status: int, field: str | None
) -> None:
    """Given bad input, when it is posted, then a 4xx JSON error names the problem, and no
    queue holds a message and no row was written."""
    response = client.post(f"/api/messages/{channel}", json=body)

    assert response.status_code == status, response.text
    assert_error_shape(response.json())
    if field is not None:
        assert field in {d.get("field", "").split(".")[0] for d in response.json()["error"]["details"]}
    assert sum(queues.depths().values()) == 0
    assert rows() == 0


@pytest.mark.parametrize("channel", list(VALID))
@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "invalid_json"),
        (b"to=a@b.com", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"x" * (300 * 1024), "application/json", 413, "payload_too_large"),
    ],
)
def test_malformed_bodies_are_refused(
    client: httpx.Client, queues: Queues, channel: str, raw: bytes, content_type: str, status: int, code: str
) -> None:
    response = client.post(f"/api/messages/{channel}", content=raw, headers={"Content-Type": content_type})

    assert response.status_code == status
    assert_error_shape(response.json(), code)
    assert sum(queues.depths().values()) == 0


def user_token(sub: str = "user-123", **claims: Any) -> str:
    return jwt.encode(
        {"sub": sub, "exp": int(time.time()) + 300, **claims}, USER_TOKEN_SECRET, algorithm="HS256"
    )


@pytest.mark.parametrize("channel", list(VALID))
@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "unauthenticated"),
        ("Bearer wrong-key", 401, "unauthenticated"),
        ("Basic dXNlcjpwdw==", 401, "unauthenticated"),
        (
            "Bearer " + jwt.encode({"sub": "u", "exp": 1}, USER_TOKEN_SECRET, algorithm="HS256"),
            401,
            "invalid_token",
        ),
        (
            "Bearer "
            + jwt.encode(
                {"sub": "u", "exp": 2**40}, "another-secret-that-is-long-enough-for-hs256", algorithm="HS256"
            ),
            401,
            "invalid_token",
        ),
        ("USER", 403, "forbidden"),
    ],
)
def test_credentials_are_checked_before_anything_is_enqueued(
    client: httpx.Client, queues: Queues, channel: str, authorization: str | None, status: int, code: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    if authorization == "USER":
        headers = {"Authorization": f"Bearer {user_token()}"}
    client.headers.pop("Authorization")

    response = client.post(f"/api/messages/{channel}", json=VALID[channel], headers=headers)

    assert response.status_code == status
    assert_error_shape(response.json(), code)
    assert sum(queues.depths().values()) == 0
    assert rows() == 0


@pytest.mark.parametrize("channel", list(VALID))
def test_a_valid_send_is_accepted_and_waits_on_its_queue(
    client: httpx.Client, queues: Queues, channel: str
) -> None:
    """Given valid input and no worker running, the gateway answers 202 with an id, the
    message sits on its channel's queue, and its status reads queued."""
    response = client.post(f"/api/messages/{channel}", json=VALID[channel])

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    queue = channel.replace("-", "_")
    assert queues.depth(queue) == 1, queues.depths()
    status = client.get(f"/api/messages/{body['id']}").json()
    assert status["status"] == "queued"
    assert status["attempts"] == 0
    assert status["channel"] == queue


@pytest.mark.parametrize("channel", list(VALID))
def test_a_transactional_send_says_so_in_its_status(client: httpx.Client, channel: str) -> None:
    """Given the same send with and without ``transactional: true``, then only the first one's
    status shows ``transactional``."""
    flagged = client.post(f"/api/messages/{channel}", json={**VALID[channel], "transactional": True})
    plain = client.post(f"/api/messages/{channel}", json={**VALID[channel], "transactional": False})

    assert flagged.status_code == plain.status_code == 202
    assert client.get(f"/api/messages/{flagged.json()['id']}").json()["transactional"] is True
    assert "transactional" not in client.get(f"/api/messages/{plain.json()['id']}").json()


def test_rotated_keys_are_both_valid(client: httpx.Client) -> None:
    response = client.post(
        "/api/messages/sms", json=VALID["sms"], headers={"Authorization": f"Bearer {ROTATED_KEY}"}
    )
    assert response.status_code == 202


def test_an_idempotency_key_returns_the_first_message(client: httpx.Client, queues: Queues) -> None:
    """Given a send with an idempotency key, when it is repeated, then the same id comes back
    and only one message was enqueued."""
    body = {**VALID["email"], "idempotencyKey": "signup-42"}

    first = client.post("/api/messages/email", json=body).json()["id"]
    second = client.post("/api/messages/email", json=body).json()["id"]

    assert first == second
    assert queues.depth("email") == 1
    assert rows() == 1


def test_phone_numbers_are_stored_in_e164(client: httpx.Client) -> None:
    message_id = client.post("/api/messages/sms", json={**VALID["sms"], "to": "+1 (415) 555-0100"}).json()[
        "id"
    ]
    assert client.get(f"/api/messages/{message_id}").json()["recipient"] == "+14155550100"


def test_unknown_message_is_404(client: httpx.Client) -> None:
    response = client.get("/api/messages/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_unknown_route_is_a_json_404(client: httpx.Client) -> None:
    response = client.post("/api/messages/carrier-pigeon", json={})
    assert response.status_code in (404, 405)
    assert_error_shape(response.json())


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "redis": "ok"}
