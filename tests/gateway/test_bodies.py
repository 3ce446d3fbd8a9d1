"""``producer/gateway/bodies.py`` over real HTTP: which media types and encodings a JSON body
may come in, and that an object naming a key twice is refused instead of read as its last
value. Every refusal is the JSON error shape, with nothing stored or enqueued."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from shared.config import Settings
from shared.db.models import EventLog, NotificationLog, WebhookConfiguration
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Queues
from tests.gateway.server import LiveServer

EMAIL = b'{"to": "user@example.com", "subject": "Hi", "text": "Hello"}'


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c


def stored(settings: Settings) -> int:
    with system_scope(settings.database_url) as session:
        return sum(
            int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (NotificationLog, EventLog, WebhookConfiguration)
        )


def post(client: httpx.Client, path: str, raw: bytes, content_type: str | None) -> httpx.Response:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return client.post(path, content=raw, headers=headers)


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    return error


ACCEPTED_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    'application/json; charset="utf-8"',
    "Application/JSON",
    "application/merge-patch+json",
    "application/vnd.kai+json; charset=utf-8",
]


@pytest.mark.parametrize("content_type", ACCEPTED_TYPES)
def test_json_media_types_in_utf8_are_accepted(
    client: httpx.Client, queues: Queues, content_type: str
) -> None:
    response = post(client, "/api/messages/email", EMAIL, content_type)

    assert response.status_code == 202, response.text
    assert queues.depth("email") == 1


REFUSED_TYPES = [
    None,
    "",
    "json",
    "text/notjson",
    "text/json",
    "text/plain",
    "application/jsonp",
    "application/json-seq",
    "application/x-json+xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=utf-16",
    "application/json; charset=latin-1",
    "application/json; charset=utf-8-sig",
    "application/json; charset=nonsense",
]


@pytest.mark.parametrize("path", ["/api/messages/email", "/api/events", "/api/webhooks/configurations"])
@pytest.mark.parametrize("content_type", REFUSED_TYPES)
def test_other_media_types_and_charsets_are_refused_with_415(
    client: httpx.Client, settings: Settings, queues: Queues, path: str, content_type: str | None
) -> None:
    """Given a JSON body declared as anything but application/json or application/*+json in
    UTF-8, then 415 unsupported_media_type, and nothing is stored or queued."""
    raw = b'{"eventType": "order.created"}' if path == "/api/events" else EMAIL
    if path.startswith("/api/webhooks"):
        raw = b'{"url": "https://example.com/hook"}'

    refused(post(client, path, raw, content_type), 415, "unsupported_media_type")

    assert stored(settings) == 0
    assert sum(queues.depths().values()) == 0


@pytest.mark.parametrize(
    "raw",
    [
        EMAIL.decode().encode("utf-16"),
        EMAIL.decode().encode("utf-16-le"),
        EMAIL.decode().encode("utf-32"),
        b'{"to": "user@example.com", "subject": "Hi", "text": "\xed\xa0\x80"}',
        b'{"to": "user@example.com", "subject": "Hi", "text": "caf\xe9"}',
    ],
    ids=["utf-16", "utf-16 without BOM", "utf-32", "an encoded surrogate", "latin-1"],
)
def test_a_body_that_is_not_utf8_is_refused(
    client: httpx.Client, settings: Settings, queues: Queues, raw: bytes
) -> None:
    """Given a body declared as application/json but not in UTF-8 (RFC 8259 section 8.1), then
    400 invalid_json rather than a guess at its encoding."""
    refused(post(client, "/api/messages/email", raw, "application/json"), 400, "invalid_json")

    assert stored(settings) == 0
    assert sum(queues.depths().values()) == 0


#: (path, body naming a key twice somewhere, the key)
DUPLICATES = [
    (
        "/api/messages/email",
        b'{"to": "a@example.com", "subject": "Hi", "text": "t", "to": "b@example.com"}',
        "to",
    ),
    (
        "/api/messages/webhook",
        b'{"url": "https://example.com/h", "payload": {"amount": 1, "amount": 100}}',
        "amount",
    ),
    ("/api/events", b'{"eventType": "order.created", "data": {"id": 1, "id": 2}}', "id"),
    ("/api/messages/batch", b'{"messages": [{"channel": "sms", "channel": "email"}]}', "channel"),
    ("/api/webhooks/configurations", b'{"url": "https://a.example/h", "url": "https://b.example/h"}', "url"),
]


@pytest.mark.parametrize(("path", "raw", "key"), DUPLICATES, ids=[d[0] for d in DUPLICATES])
def test_an_object_naming_a_key_twice_is_refused(
    client: httpx.Client, settings: Settings, queues: Queues, path: str, raw: bytes, key: str
) -> None:
    """Given a body in which one object names the same key twice (RFC 8259 leaves its meaning
    open: parsers disagree on which value wins), then 400 invalid_json naming the key, instead
    of silently sending to the last one."""
    error = refused(post(client, path, raw, "application/json"), 400, "invalid_json")

    assert f"duplicate key {key!r}" in error["message"]
    assert stored(settings) == 0
    assert sum(queues.depths().values()) == 0


def test_the_same_key_in_different_objects_is_fine(client: httpx.Client, queues: Queues) -> None:
    raw = b'{"url": "https://example.com/h", "payload": {"id": 1, "items": [{"id": 2}, {"id": 3}]}}'

    response = post(client, "/api/messages/webhook", raw, "application/json")

    assert response.status_code == 202, response.text
    assert queues.depth("webhook") == 1


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_numbers_json_does_not_have_are_refused(
    client: httpx.Client, settings: Settings, queues: Queues, constant: bytes
) -> None:
    """Python's json reads NaN and Infinity, which are not JSON and which PostgreSQL's jsonb
    cannot hold: refused at the door."""
    raw = b'{"eventType": "order.created", "data": {"total": ' + constant + b"}}"

    refused(post(client, "/api/events", raw, "application/json"), 400, "invalid_json")

    assert stored(settings) == 0
