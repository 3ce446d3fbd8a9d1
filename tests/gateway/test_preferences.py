"""``GET|PUT|PATCH /api/notifications/preferences`` over real HTTP, for a user token or a server
key acting for a user with ``X-User-Id``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import SERVER_KEY, USER_TOKEN_SECRET
from tests.gateway.server import LiveServer


def user_token(user_id: str) -> str:
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + 300}, USER_TOKEN_SECRET, algorithm="HS256")


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {user_token('ann')}"
        yield c


PATH = "/api/notifications/preferences"


def test_a_user_without_preferences_gets_the_defaults(client: httpx.Client) -> None:
    body = client.get(PATH).json()

    assert body == {
        "userId": "ann",
        "emailEnabled": True,
        "smsEnabled": True,
        "inAppEnabled": True,
        "webhookEnabled": True,
        "pushEnabled": True,
        "chatEnabled": True,
        "eventPreferences": {},
        "quietHours": None,
        "timezone": "UTC",
        "digest": {},
    }


def test_patch_changes_what_it_names_and_returns_the_new_state(client: httpx.Client) -> None:
    first = client.patch(
        PATH, json={"smsEnabled": False, "eventPreferences": {"order.shipped": {"in-app": False}}}
    )
    second = client.patch(
        PATH,
        json={
            "quietHours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"},
            "eventPreferences": {"order.shipped": {"email": True}},
        },
    )

    assert first.status_code == 200
    assert first.json()["smsEnabled"] is False
    state = second.json()
    assert state["smsEnabled"] is False
    assert state["eventPreferences"] == {"order.shipped": {"in_app": False, "email": True}}
    assert (state["quietHours"], state["timezone"]) == ({"start": "22:00", "end": "07:00"}, "Europe/Paris")
    assert client.get(PATH).json() == state
    assert client.patch(PATH, json={"quietHours": None}).json()["quietHours"] is None
    forgotten = client.patch(PATH, json={"eventPreferences": {"order.shipped": {"email": None}}}).json()
    assert forgotten["eventPreferences"] == {"order.shipped": {"in_app": False}}


def test_put_replaces_the_whole_document(client: httpx.Client) -> None:
    """Given preferences set in every field, when a PUT names only the email switch, then every
    other field is back to its default."""
    client.put(
        PATH,
        json={
            "smsEnabled": False,
            "inAppEnabled": False,
            "eventPreferences": {"order.shipped": {"sms": True}},
            "quietHours": {"start": "22:00", "end": "07:00"},
            "timezone": "Europe/Paris",
            "digest": {"all": "daily"},
        },
    )

    replaced = client.put(PATH, json={"emailEnabled": False})

    assert replaced.status_code == 200, replaced.text
    assert replaced.json() == {
        "userId": "ann",
        "emailEnabled": False,
        "smsEnabled": True,
        "inAppEnabled": True,
        "webhookEnabled": True,
        "pushEnabled": True,
        "chatEnabled": True,
        "eventPreferences": {},
        "quietHours": None,
        "timezone": "UTC",
        "digest": {},
    }
    assert client.get(PATH).json() == replaced.json()


@pytest.mark.parametrize(
    "body",
    [
        {"emailEnabled": "maybe"},
        {"quietHours": {"start": "25:00", "end": "07:00"}},
        {"quietHours": {"start": "22:00", "end": "22:00"}},
        {"timezone": "Mars/Olympus"},
        {"eventPreferences": {"order.shipped": {"pigeon": True}}},
        {"digest": {"all": "fortnightly"}},
        {"digest": {"": "daily"}},
        {"surprise": 1},
    ],
)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_invalid_preferences_are_refused(client: httpx.Client, body: dict[str, Any], method: str) -> None:
    response = client.request(method, PATH, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert client.get(PATH).json()["emailEnabled"] is True


def test_digest_choices_merge_per_event_type(client: httpx.Client) -> None:
    """Given a daily digest for every type, when a PATCH makes one type instant and turns
    another off, then the three choices stand side by side."""
    client.put(PATH, json={"digest": {"all": "daily"}})

    patched = client.patch(PATH, json={"digest": {"order.shipped": "instant", "promo.sent": "off"}})

    assert patched.status_code == 200, patched.text
    assert patched.json()["digest"] == {"all": "daily", "order.shipped": "instant", "promo.sent": "off"}


def test_each_user_sees_only_their_own_preferences(client: httpx.Client) -> None:
    client.put(PATH, json={"emailEnabled": False})
    as_bob = {"Authorization": f"Bearer {user_token('bob')}"}
    server_for_ann = {"Authorization": f"Bearer {SERVER_KEY}", "X-User-Id": "ann"}

    assert client.get(PATH, headers=as_bob).json()["emailEnabled"] is True
    assert client.get(PATH, headers=server_for_ann).json()["emailEnabled"] is False
    assert client.get(PATH, headers={"Authorization": f"Bearer {SERVER_KEY}"}).status_code == 400
