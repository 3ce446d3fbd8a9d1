"""Hostile request bodies over real HTTP, on every kind of endpoint that reads one: JSON
nested too deep, too many values, NUL characters, lone surrogates, and header injection
through email addresses. Each is refused in the JSON error shape, and nothing is stored or
enqueued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from shared.config import Settings
from shared.db.models import EventLog, MessageTemplate, NotificationLog
from shared.db.rls import system_scope
from shared.json_shape import MAX_JSON_DEPTH, MAX_JSON_VALUES
from tests.conftest import SERVER_KEY, Queues
from tests.gateway.server import LiveServer


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


def stored(settings: Settings) -> int:
    with system_scope(settings.database_url) as session:
        return sum(
            int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (NotificationLog, EventLog, MessageTemplate)
        )


#: An endpoint reading a body and the body's field that may hold any JSON.
ENDPOINTS = [
    ("/api/messages/webhook", {"url": "https://example.com/hook"}, "payload"),
    ("/api/events", {"eventType": "order.created"}, "data"),
    ("/api/templates", {"key": "t", "channel": "sms", "sms": "x"}, "sampleData"),
]

#: (case, value for the free field, status, error code, words of the message)
HOSTILE = [
    ("too deep", nested(MAX_JSON_DEPTH), 400, "invalid_json", f"deeper than {MAX_JSON_DEPTH}"),
    ("too many values", {"v": [0] * MAX_JSON_VALUES}, 413, "payload_too_large", "values"),
    ("NUL in a value", {"v": "a\x00b"}, 400, "invalid_json", "NUL"),
    ("NUL in a key", {"a\x00b": 1}, 400, "invalid_json", "NUL"),
    ("lone surrogate in a value", {"v": "a\ud800b"}, 400, "invalid_json", "surrogate"),
    ("lone surrogate in a key", {"\udfff": 1}, 400, "invalid_json", "surrogate"),
]


def post_escaped(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """``body`` as JSON with every non-ASCII character escaped (``\\ud800``), as a hostile
    client would send a lone surrogate: it has no UTF-8 encoding of its own."""
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("path", "body", "field"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
@pytest.mark.parametrize(("case", "value", "status", "code", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_body_is_refused_and_nothing_is_stored(
    client: httpx.Client,
    settings: Settings,
    queues: Queues,
    path: str,
    body: dict[str, Any],
    field: str,
    case: str,
    value: Any,
    status: int,
    code: str,
    words: str,
) -> None:
    """Given a body within the byte cap whose shape is hostile, when it is posted, then it is
    refused before any validation or storage with the limit named, and nothing is queued."""
    response = post_escaped(client, path, {**body, field: value})

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], isinstance(error["details"], list)) == (code, True)
    assert words in error["message"]
    assert stored(settings) == 0
    assert sum(queues.depths().values()) == 0


#: A lone surrogate in each kind of free text or data a message carries: (case, path, body).
SURROGATES = [
    ("email text", "/api/messages/email", {"to": "a@example.com", "subject": "Hi", "text": "t\ud800"}),
    ("email html", "/api/messages/email", {"to": "a@example.com", "subject": "Hi", "html": "\udc00"}),
    (
        "webhook payload",
        "/api/messages/webhook",
        {"url": "https://example.com/h", "payload": {"k": "\ud83d"}},
    ),
    (
        "in-app data",
        "/api/messages/in-app",
        {"userId": "u", "title": "t", "message": "m", "data": {"k": "\ud800"}},
    ),
    (
        "template data",
        "/api/messages/email",
        {"to": "a@example.com", "template": "hi", "data": {"n": "\ud800"}},
    ),
    ("event data", "/api/events", {"eventType": "order.created", "data": {"k": "\ud800"}}),
]


@pytest.mark.parametrize(("path", "body"), [s[1:] for s in SURROGATES], ids=[s[0] for s in SURROGATES])
def test_a_lone_surrogate_is_refused_wherever_it_is(
    client: httpx.Client, settings: Settings, queues: Queues, path: str, body: dict[str, Any]
) -> None:
    """Given a string holding half of a UTF-16 surrogate pair (valid as a JSON escape, but
    no Unicode text: it has no UTF-8 encoding), when it is posted, then the body is refused
    as unacceptable JSON, not failed on later, and nothing is stored or queued."""
    template = {"key": "hi", "channel": "email", "subject": "Hi {{name}}", "text": "t"}
    assert client.post("/api/templates", json=template).status_code == 201
    before = stored(settings)

    response = post_escaped(client, path, body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], "surrogate" in error["message"]) == ("invalid_json", True)
    assert stored(settings) == before
    assert sum(queues.depths().values()) == 0


def test_a_body_at_the_depth_limit_is_accepted(client: httpx.Client, queues: Queues) -> None:
    """The body is level 1 and ``payload`` level 2, so a payload of 31 levels is the deepest."""
    body = {"url": "https://example.com/hook", "payload": nested(MAX_JSON_DEPTH - 1)}

    response = client.post("/api/messages/webhook", json=body)

    assert response.status_code == 202, response.text
    assert queues.depth("webhook") == 1


#: Header injection and address smuggling through ``to``/``subject``, each refused with 422.
INJECTION = [
    ("to", "victim@example.com\nBcc: all@example.com"),
    ("to", "victim@example.com\rBcc: all@example.com"),
    ("to", "a@example.com, b@example.com"),
    ("to", "a@example.com; b@example.com"),
    ("to", "Someone <a@example.com>"),
    ("to", "<a@example.com>"),
    ("to", "a@example.com\x00"),
    ("subject", "hello\nBcc: all@example.com"),
    ("subject", "hello\r\n\r\n<html>body</html>"),
    # Every other character Python's email package splits a header on, and other controls:
    # each would be accepted here and then fail the message when the worker builds it.
    ("subject", "hello\u2028Bcc: all@example.com"),
    ("subject", "hello\u2029world"),
    ("subject", "hello\x85world"),
    ("subject", "hello\x0bworld"),
    ("subject", "hello\x0cworld"),
    ("subject", "hello\x1cworld"),
    ("subject", "hello\x1bworld"),
    ("subject", "hello\x7fworld"),
]


@pytest.mark.parametrize(("field", "value"), INJECTION)
def test_header_injection_in_an_email_is_refused(
    client: httpx.Client, settings: Settings, queues: Queues, field: str, value: str
) -> None:
    body = {"to": "user@example.com", "subject": "Hi", "text": "t", field: value}

    response = post_escaped(client, "/api/messages/email", body)

    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("validation_error", "invalid_json")
    assert stored(settings) == 0
    assert sum(queues.depths().values()) == 0


def test_a_subject_with_a_tab_or_any_printable_character_is_accepted(
    client: httpx.Client, queues: Queues
) -> None:
    """A tab may fold inside a header, and non-ASCII letters, emoji and joiners are text."""
    subject = "Réservé\tfor you: \u00e9t\u00e9 \U0001f600 \u200d done"
    body = {"to": "user@example.com", "subject": subject, "text": "t"}

    response = post_escaped(client, "/api/messages/email", body)

    assert response.status_code == 202, response.text
    assert queues.depth("email") == 1


def test_a_templated_email_validates_its_address_the_same_way(
    client: httpx.Client, settings: Settings, queues: Queues
) -> None:
    template = {"key": "hi", "channel": "email", "subject": "Hi", "text": "t"}
    assert client.post("/api/templates", json=template).status_code == 201

    response = client.post(
        "/api/messages/email", json={"to": "a@example.com\nBcc: b@example.com", "template": "hi"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "to"
    assert sum(queues.depths().values()) == 0
