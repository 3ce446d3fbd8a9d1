"""Scheduled sends over HTTP: ``sendAt``/``delayMs`` on a send, ``DELETE`` and ``PATCH
/api/messages/{id}``, their refusals in the JSON error shape, and their scoping to the acting
user."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog, utcnow
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Fleet, Queues
from tests.gateway.server import LiveServer
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until

IN_APP = {"userId": "u-sched", "title": "Reminder", "message": "Your trial ends soon"}


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c


def stored(settings: Settings) -> int:
    with system_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(NotificationLog)) or 0)


def schedule(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/messages/in-app", json={**IN_APP, "delayMs": 3_600_000, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert (error["code"], isinstance(error["message"], str), isinstance(error["details"], list)) == (
        code,
        True,
        True,
    )
    return error


def test_a_send_with_send_at_answers_scheduled_and_publishes_nothing(
    api: httpx.Client, queues: Queues
) -> None:
    at = (utcnow() + timedelta(hours=1)).replace(microsecond=0)

    answer = schedule(api, delayMs=None, sendAt=at.isoformat())
    status = api.get(f"/api/messages/{answer['id']}").json()

    assert (answer["status"], datetime.fromisoformat(answer["sendAt"])) == ("scheduled", at)
    assert (status["status"], datetime.fromisoformat(status["sendAt"])) == ("scheduled", at)
    assert queues.depth("in_app") == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sendAt": "2020-01-01T00:00:00Z"}, "sendAt"),
        ({"sendAt": "2999-01-01T00:00:00Z"}, "sendAt"),
        ({"sendAt": "tomorrow"}, "sendAt"),
        ({"sendAt": 1767225600}, "sendAt"),
        ({"sendAt": {"localTime": "24:00"}}, "sendAt.LocalTime.localTime"),
        ({"delayMs": -5}, "delayMs"),
        ({"delayMs": 10**13}, "delayMs"),
        ({"delayMs": 1000, "sendAt": "2030-01-01T00:00:00Z"}, None),
    ],
)
def test_a_bad_send_time_is_refused_with_422_and_nothing_stored(
    api: httpx.Client, settings: Settings, queues: Queues, fields: dict[str, Any], field: str | None
) -> None:
    response = api.post("/api/messages/in-app", json={**IN_APP, **fields})

    error = assert_error(response, 422, "validation_error")
    assert field in [d["field"] for d in error["details"]]
    assert stored(settings) == 0
    assert queues.depth("in_app") == 0


def test_delete_cancels_a_scheduled_message(api: httpx.Client) -> None:
    message_id = schedule(api)["id"]

    response = api.delete(f"/api/messages/{message_id}")

    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["status"]) == (message_id, "canceled")
    assert api.get(f"/api/messages/{message_id}").json()["status"] == "canceled"
    assert_error(api.delete(f"/api/messages/{message_id}"), 409, "not_cancelable")
    assert_error(api.patch(f"/api/messages/{message_id}", json={"delayMs": 10}), 409, "not_scheduled")


def test_patch_moves_a_scheduled_message(api: httpx.Client) -> None:
    message_id = schedule(api)["id"]
    at = (utcnow() + timedelta(hours=5)).replace(microsecond=0)

    moved = api.patch(f"/api/messages/{message_id}", json={"sendAt": at.isoformat()})

    assert moved.status_code == 200, moved.text
    assert (moved.json()["status"], datetime.fromisoformat(moved.json()["sendAt"])) == ("scheduled", at)
    assert datetime.fromisoformat(moved.json()["nextAttemptAt"]) == at


@pytest.mark.parametrize(
    "body",
    [{}, {"sendAt": "2020-01-01T00:00:00Z"}, {"delayMs": 1, "sendAt": "2030-01-01T00:00:00Z"}, {"at": 5}],
)
def test_patch_with_a_bad_send_time_is_refused_and_changes_nothing(
    api: httpx.Client, body: dict[str, Any]
) -> None:
    answer = schedule(api)

    assert_error(api.patch(f"/api/messages/{answer['id']}", json=body), 422, "validation_error")
    assert api.get(f"/api/messages/{answer['id']}").json()["sendAt"] == answer["sendAt"]


def test_an_unknown_message_is_404(api: httpx.Client) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"

    assert_error(api.delete(f"/api/messages/{unknown}"), 404, "not_found")
    assert_error(api.patch(f"/api/messages/{unknown}", json={"delayMs": 10}), 404, "not_found")


def test_acting_for_a_user_reaches_only_that_users_messages(api: httpx.Client) -> None:
    """Given a scheduled message of u-sched, then X-User-Id of another user finds nothing to
    cancel or move (404, as for a message that does not exist), and u-sched's own can."""
    message_id = schedule(api)["id"]

    other = {"X-User-Id": "someone-else"}
    assert_error(api.delete(f"/api/messages/{message_id}", headers=other), 404, "not_found")
    assert_error(
        api.patch(f"/api/messages/{message_id}", json={"delayMs": 9}, headers=other), 404, "not_found"
    )
    owner = {"X-User-Id": "u-sched"}
    assert (
        api.patch(f"/api/messages/{message_id}", json={"delayMs": 60_000}, headers=owner).status_code == 200
    )
    assert api.delete(f"/api/messages/{message_id}", headers=owner).json()["status"] == "canceled"


def test_a_batch_item_may_be_scheduled(api: httpx.Client) -> None:
    at = (utcnow() + timedelta(minutes=30)).replace(microsecond=0)

    response = api.post(
        "/api/messages/batch",
        json={
            "messages": [
                {"channel": "in-app", **IN_APP, "sendAt": at.isoformat()},
                {"channel": "in-app", **IN_APP, "sendAt": {"localTime": "07:30"}},
                {"channel": "in-app", **IN_APP, "delayMs": -1},
            ]
        },
    )

    assert response.status_code == 202, response.text
    first, local, refused = response.json()["results"]
    assert (first["status"], datetime.fromisoformat(first["sendAt"])) == ("scheduled", at)
    assert (local["status"], local["timezone"]) == ("scheduled", "UTC")
    assert refused["error"]["code"] == "validation_error"


def test_a_delivered_message_cannot_be_canceled(
    api: httpx.Client, settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a webhook scheduled 1 s ahead and delivered by the worker, then DELETE answers
    409 in the JSON error shape and the message stays delivered."""
    with WebhookReceiver() as receiver:
        fleet(settings, [Channel.WEBHOOK])
        answer = api.post("/api/messages/webhook", json={"url": receiver.url, "payload": {}, "delayMs": 1000})
        message_id = answer.json()["id"]
        assert answer.json()["status"] == "scheduled"

        wait_until(
            lambda: api.get(f"/api/messages/{message_id}").json()["status"] == "delivered",
            timeout=20,
            message="the scheduled webhook was not delivered",
        )

    error = assert_error(api.delete(f"/api/messages/{message_id}"), 409, "not_cancelable")
    assert "delivered" in error["message"]
    assert api.get(f"/api/messages/{message_id}").json()["status"] == "delivered"
