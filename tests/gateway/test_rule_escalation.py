"""``/api/rules`` with escalation steps: stored and shown as given, merged by PATCH, and
refused with a 422 that names the step, on PostgreSQL and on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from migrations.migrate import upgrade
from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import SERVER_KEY, settings_with
from tests.gateway.server import LiveServer

STEPS = [
    {"channel": "in_app"},
    {"channel": "email", "after": "30m", "if": "notRead"},
    {"channel": "sms", "after": "4h", "if": "notRead"},
]
RULE = {"name": "sign-in", "eventType": "security.alert", "templateKey": "alert", "steps": STEPS}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(params=["postgresql", "sqlite"])
def client(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """A live gateway with a server key and the alert templates of every rule channel."""
    database = settings.database_url
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path / 'rules.db'}"
        upgrade(database)
    app = create_app(settings_with(settings, database_url=database))
    auth = {"Authorization": f"Bearer {SERVER_KEY}"}
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=auth, timeout=30) as c:
        for template in (
            {"key": "alert", "channel": "email", "subject": "S", "text": "T"},
            {"key": "alert", "channel": "sms", "sms": "T"},
            {"key": "alert", "channel": "in_app", "title": "T", "message": "M"},
        ):
            assert c.post("/api/templates", json=template).status_code == 201
        yield c


def answer(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_rule_with_steps_sends_on_their_channels_and_shows_them(client: httpx.Client) -> None:
    rule = answer(client.post("/api/rules", json=RULE), 201)

    assert (rule["channels"], rule["steps"]) == (["in_app", "email", "sms"], STEPS)
    assert answer(client.get(f"/api/rules/{rule['id']}")) == rule


def test_a_patch_of_the_steps_moves_the_channels_with_them(client: httpx.Client) -> None:
    rule = answer(client.post("/api/rules", json=RULE), 201)

    patched = answer(client.patch(f"/api/rules/{rule['id']}", json={"steps": STEPS[:2]}, headers=MERGE_PATCH))

    assert (patched["channels"], patched["steps"]) == (["in_app", "email"], STEPS[:2])


@pytest.mark.parametrize(
    ("steps", "says"),
    [
        ([STEPS[0], {"channel": "email", "after": "soon", "if": "notRead"}], "after must be a whole number"),
        ([STEPS[0], {"channel": "email", "after": "1m", "if": "opened"}], "notRead"),
        ([{"channel": "email"}, {"channel": "sms", "after": "1m", "if": "notRead"}], "in_app first step"),
        ([STEPS[0]], "at least two steps"),
    ],
)
def test_steps_that_make_no_escalation_are_refused_and_nothing_is_saved(
    client: httpx.Client, steps: list[dict[str, Any]], says: str
) -> None:
    refused = client.post("/api/rules", json={**RULE, "steps": steps})

    error = answer(refused, 422)["error"]
    assert error["code"] == "validation_error"
    assert any(says in d["message"] and d["field"].startswith("steps") for d in error["details"])
    assert answer(client.get("/api/rules"))["items"] == []
