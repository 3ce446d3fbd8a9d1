"""``/api/templates`` over real HTTP: saving refuses templates that could not render (400
with the part, line and reason), editing adds versions, preview renders, and a send may
name a template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from producer.gateway.app import create_app
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Queues
from tests.gateway.server import LiveServer

WELCOME = {
    "key": "welcome",
    "channel": "email",
    "subject": "Welcome, {{name}}",
    "text": "Hello {{name}}",
    "html": "<p>Hello {{name}}</p>",
    "sampleData": {"name": "Ann"},
}


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c


#: (what is wrong, body changes, part named, line named, words of the reason)
REFUSED: list[tuple[str, dict[str, Any], str, int | None, str]] = [
    ("syntax error", {"text": "Hello\n{{#if name}}\nno end"}, "text", 2, "never closed"),
    ("unknown helper", {"html": "<p>\n{{shout name}}</p>"}, "html", 2, "unknown helper 'shout'"),
    ("unknown partial", {"text": "{{> footer}}"}, "text", 1, "unknown partial 'footer'"),
    ("hostile path literal", {"subject": "{{['+exit(1)+']}}"}, "subject", 1, "path literals"),
    ("dunder access", {"text": "{{name.__class__.__mro__}}"}, "text", 1, "not a variable name"),
    ("empty required part", {"subject": "{{nothing}}"}, "subject", None, "renders empty"),
    ("missing required part", {"subject": None}, "subject", None, "needs a 'subject'"),
    ("no body", {"text": None, "html": None}, "text", None, "needs a 'text' or an 'html'"),
    ("part of another channel", {"sms": "hi"}, "sms", None, "has no 'sms' part"),
]


@pytest.mark.parametrize(("case", "changes", "part", "line", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_bad_template_is_refused_when_saved(
    client: httpx.Client, case: str, changes: dict[str, Any], part: str, line: int | None, reason: str
) -> None:
    response = client.post("/api/templates", json={**WELCOME, **changes})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_template"
    assert error["details"][0]["part"] == part
    assert error["details"][0]["line"] == line
    assert reason in error["details"][0]["message"]
    assert client.get("/api/templates/welcome").status_code == 404


def test_editing_adds_a_version_and_keeps_the_old_one_readable(client: httpx.Client) -> None:
    assert client.post("/api/templates", json=WELCOME).status_code == 201
    assert client.post("/api/templates", json=WELCOME).status_code == 409

    edited = client.put("/api/templates/welcome", json={**WELCOME, "subject": "Hi {{name}}!"})

    assert edited.status_code == 200
    assert (edited.json()["version"], edited.json()["subject"]) == (2, "Hi {{name}}!")
    current = client.get("/api/templates/welcome").json()["items"]
    assert [(t["version"], t["current"]) for t in current] == [(2, True)]
    old = client.get("/api/templates/welcome", params={"channel": "email", "version": "1"}).json()
    assert (old["version"], old["subject"], old["current"]) == (1, "Welcome, {{name}}", False)


def test_preview_renders_with_given_or_sample_data(client: httpx.Client) -> None:
    client.post("/api/templates", json=WELCOME)

    sample = client.post("/api/templates/welcome/preview", json={}).json()
    given = client.post("/api/templates/welcome/preview", json={"data": {"name": "<Bo>"}}).json()
    missing = client.post("/api/templates/welcome/preview", json={"data": {}})

    assert sample["subject"] == "Welcome, Ann"
    assert (given["text"], given["html"]) == ("Hello <Bo>", "<p>Hello &lt;Bo&gt;</p>")
    assert missing.status_code == 400
    assert "missing variable 'name'" in missing.json()["error"]["message"]


def test_partials_can_be_shared_and_deleted_templates_disappear(client: httpx.Client) -> None:
    footer = {"key": "footer", "channel": "partial", "text": "-- {{team}}", "sampleData": {"team": "KAI"}}
    assert client.post("/api/templates", json=footer).status_code == 201
    body = {**WELCOME, "text": "Hello {{name}}\n{{> footer}}", "sampleData": {"name": "A", "team": "KAI"}}
    assert client.post("/api/templates", json=body).status_code == 201

    assert client.delete("/api/templates/welcome").status_code == 204
    assert client.get("/api/templates/welcome").status_code == 404
    assert [t["key"] for t in client.get("/api/templates").json()["items"]] == ["footer"]


def test_a_send_may_name_a_template(client: httpx.Client, settings: Settings, queues: Queues) -> None:
    """Given a template, when an email names it, then the message is queued with the
    template's key and version pinned; an unknown template is refused with nothing queued."""
    client.post("/api/templates", json=WELCOME)

    accepted = client.post(
        "/api/messages/email", json={"to": "ann@example.com", "template": "welcome", "data": {"name": "Ann"}}
    )
    unknown = client.post("/api/messages/email", json={"to": "ann@example.com", "template": "nope"})

    assert accepted.status_code == 202, accepted.text
    assert unknown.status_code == 422
    assert "nope" in unknown.json()["error"]["message"]
    with system_scope(settings.database_url) as session:
        row = session.scalars(select(NotificationLog)).one()
    assert (row.template_key, row.template_version) == ("welcome", 1)
    assert row.payload["template"] == {
        "key": "welcome",
        "locale": "en",
        "version": 1,
        "data": {"name": "Ann"},
    }
    assert queues.depth("email") == 1


def test_a_template_falls_back_to_the_default_locale(client: httpx.Client, settings: Settings) -> None:
    client.post("/api/templates", json=WELCOME)
    client.post("/api/templates", json={**WELCOME, "locale": "fr", "subject": "Bienvenue, {{name}}"})

    for locale, expected in (("fr", "fr"), ("de", "en")):
        response = client.post(
            "/api/messages/email",
            json={"to": "a@example.com", "template": "welcome", "data": {"name": "A"}, "locale": locale},
        )
        assert response.status_code == 202
        with system_scope(settings.database_url) as session:
            row = session.get(NotificationLog, response.json()["id"])
            assert row is not None and row.payload["template"]["locale"] == expected


def test_templates_need_a_server_key(client: httpx.Client) -> None:
    assert client.get("/api/templates", headers={"Authorization": ""}).status_code == 401
