"""Requests the fuzz test (test_fuzz.py) once answered with 500, each now refused with the
JSON error shape and nothing stored: values the database cannot hold must be caught at the
door, not discovered by a failing INSERT."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from shared.config import Settings
from shared.db.models import EventLog, NotificationLog, UserContact
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY
from tests.gateway.server import LiveServer

SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def _rows(settings: Settings, model: Any) -> int:
    with system_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_server_key_acting_for_an_over_long_user_id_is_refused(
    settings: Settings, client: httpx.Client
) -> None:
    """Given X-User-Id longer than any stored user id, then the user endpoint answers 400
    invalid_user_id instead of failing on the INSERT."""
    response = client.put(
        "/api/notifications/preferences",
        json={"emailEnabled": True},
        headers={**SERVER, "X-User-Id": "u" * 256},
    )
    assert _error(response, 400)["code"] == "invalid_user_id"


@pytest.mark.parametrize(
    ("path", "body", "table"),
    [
        (
            "/api/messages/in-app",
            {"userId": "alice", "title": "a\u0000b", "message": "m"},
            NotificationLog,
        ),
        ("/api/events", {"eventType": "signup", "data": {"name": "\u0000"}}, EventLog),
        ("/api/events", {"eventType": "signup", "data": {"k\u0000": 1}}, EventLog),
    ],
)
def test_a_nul_character_in_a_body_is_refused(
    settings: Settings, client: httpx.Client, path: str, body: dict[str, Any], table: Any
) -> None:
    """Given a JSON body with a NUL character (which PostgreSQL cannot store), then the body
    is refused as unacceptable JSON and nothing is recorded or enqueued."""
    error = _error(client.post(path, json=body, headers=SERVER), 400)
    assert error["code"] == "invalid_json" and "NUL" in error["message"]
    assert _rows(settings, table) == 0


def test_an_over_long_locale_is_refused(settings: Settings, client: httpx.Client) -> None:
    """Given a contact locale matching the pattern but wider than its column, then 422."""
    locale = "en" + "-abcdefgh" * 5
    response = client.put("/api/users/alice/contacts", json={"locale": locale}, headers=SERVER)
    assert _error(response, 422)["details"][0]["field"] == "locale"
    assert _rows(settings, UserContact) == 0


def test_a_nul_character_in_a_query_parameter_is_refused(client: httpx.Client) -> None:
    """Given a query parameter the database cannot look up (a NUL character), then 422."""
    response = client.get("/api/templates/welcome", params={"locale": "\u0000en"}, headers=SERVER)
    assert _error(response, 422)["code"] == "invalid_value"
