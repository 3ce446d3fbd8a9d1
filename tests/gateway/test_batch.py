"""``POST /api/messages/batch`` and ``send_many``: many messages in one call, each item
answered on its own; a refused item enqueues nothing, and one bad item does not stop the
others."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from producer.gateway.messages import MAX_BATCH_KEY_CHARS
from producer.service import NotificationService
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Queues
from tests.gateway.server import LiveServer
from tests.gateway.test_messages import BIG, VALID


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c


def item(channel: str, **changes: Any) -> dict[str, Any]:
    return {"channel": channel, **VALID[channel], **changes}


def stored_ids(settings: Settings) -> set[str]:
    with system_scope(settings.database_url) as session:
        return set(session.scalars(select(NotificationLog.id)))


def test_good_items_are_enqueued_and_bad_ones_answered_each(
    client: httpx.Client, settings: Settings, queues: Queues
) -> None:
    """Given a batch of every channel with bad items between them, then the answer is 202 with
    one result per item in order: an id for each good one (enqueued on its channel's queue),
    the JSON error shape for each bad one, of which nothing is stored."""
    batch = [
        item("email"),
        item("sms", to="not-a-number"),
        item("webhook"),
        {"to": "no-channel@example.com"},
        item("in-app"),
        item("email", text=BIG),
        {"channel": "carrier-pigeon", "to": "x"},
        item("sms"),
        item("push"),
        item("chat"),
        item("push", urgency="asap"),
    ]

    response = client.post("/api/messages/batch", json={"messages": batch})

    assert response.status_code == 202
    results = response.json()["results"]
    assert len(results) == len(batch)
    good = [0, 2, 4, 7, 8, 9]
    for index, result in enumerate(results):
        if index in good:
            assert result["status"] == "queued" and isinstance(result["id"], str)
        else:
            assert set(result) == {"error"}
            assert set(result["error"]) == {"code", "message", "details"}
    assert results[1]["error"]["details"][0]["field"] == "to"
    assert results[3]["error"]["details"][0]["field"] == "channel"
    assert results[5]["error"]["code"] == "payload_too_large"
    assert results[10]["error"]["details"][0]["field"] == "urgency"
    assert stored_ids(settings) == {results[i]["id"] for i in good}
    assert queues.depths(["email", "sms", "webhook", "in_app", "push", "chat"]) == {
        "email": 1,
        "sms": 1,
        "webhook": 1,
        "in_app": 1,
        "push": 1,
        "chat": 1,
    }


def test_transactional_is_an_item_field_checked_item_by_item(
    client: httpx.Client, settings: Settings, queues: Queues
) -> None:
    """Given a batch with a transactional email and one whose flag is not a boolean, then the
    first is enqueued and says so in its status, the second is refused naming the field and
    nothing of it is stored."""
    batch = [item("email", transactional=True), item("email", transactional="yes")]

    results = client.post("/api/messages/batch", json={"messages": batch}).json()["results"]

    assert client.get(f"/api/messages/{results[0]['id']}").json()["transactional"] is True
    assert results[1]["error"]["code"] == "validation_error"
    assert results[1]["error"]["details"][0]["field"] == "transactional"
    assert stored_ids(settings) == {results[0]["id"]}
    assert queues.depths(["email"]) == {"email": 1}


def test_more_than_a_thousand_messages_are_refused_whole(client: httpx.Client, settings: Settings) -> None:
    response = client.post("/api/messages/batch", json={"messages": [item("sms")] * 1001})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert stored_ids(settings) == set()


@pytest.mark.parametrize(
    "body", [{}, {"messages": []}, {"messages": "all"}, {"messages": [item("sms")], "x": 1}]
)
def test_a_malformed_batch_is_refused(client: httpx.Client, settings: Settings, body: dict[str, Any]) -> None:
    response = client.post("/api/messages/batch", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "messages"
    assert stored_ids(settings) == set()


def test_idempotency_keys_hold_per_item(client: httpx.Client, settings: Settings, queues: Queues) -> None:
    """Given items with idempotency keys, one key used twice in the batch, then those two get
    the same id; sent again, the whole batch gets the same ids and enqueues nothing more."""
    batch = [
        item("sms", idempotencyKey="otp-1"),
        item("sms", idempotencyKey="otp-2"),
        item("sms", idempotencyKey="otp-1"),
    ]

    first = [r["id"] for r in client.post("/api/messages/batch", json={"messages": batch}).json()["results"]]
    again = [r["id"] for r in client.post("/api/messages/batch", json={"messages": batch}).json()["results"]]

    assert first[0] == first[2] != first[1]
    assert again == first
    assert len(stored_ids(settings)) == 2
    assert queues.depth("sms") == 2


def test_an_idempotency_key_header_makes_the_whole_batch_idempotent(
    client: httpx.Client, settings: Settings, queues: Queues
) -> None:
    """Given a batch sent with an Idempotency-Key header, then each item without a key of its
    own is keyed ``<header>:<index>``: the same batch again gets the same ids and enqueues
    nothing more, and a changed item under the same header is refused on its own."""
    batch = [item("sms"), item("sms", idempotencyKey="own-1"), item("email")]
    header = {"Idempotency-Key": "nightly-2026-03-01"}

    first = client.post("/api/messages/batch", json={"messages": batch}, headers=header).json()["results"]
    again = client.post("/api/messages/batch", json={"messages": batch}, headers=header).json()["results"]
    changed = [item("sms", message="another text"), *batch[1:]]
    refused = client.post("/api/messages/batch", json={"messages": changed}, headers=header).json()["results"]

    assert again == first
    keys = [client.get(f"/api/messages/{r['id']}").json()["idempotencyKey"] for r in first]
    assert keys == ["nightly-2026-03-01:0", "own-1", "nightly-2026-03-01:2"]
    assert refused[0]["error"]["code"] == "idempotency_key_reused"
    assert refused[1:] == first[1:]
    assert stored_ids(settings) == {r["id"] for r in first}
    assert queues.depths(["sms", "email"]) == {"sms": 2, "email": 1}


@pytest.mark.parametrize(
    "key", ["", "k" * (MAX_BATCH_KEY_CHARS + 1)], ids=["empty", "too long for an item's key"]
)
def test_a_batch_idempotency_key_that_cannot_key_its_items_is_refused(
    client: httpx.Client, settings: Settings, key: str
) -> None:
    """Given an Idempotency-Key header too short or too long to key ``<header>:<index>``, then
    the batch is refused whole with 422 naming the header, and nothing is stored."""
    response = client.post(
        "/api/messages/batch", json={"messages": [item("sms")]}, headers={"Idempotency-Key": key}
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "Idempotency-Key"
    assert stored_ids(settings) == set()


def test_every_message_counts_against_the_send_budget(make_settings: Any) -> None:
    """Given a send budget of 5 per minute, then a batch of 6 is refused with 429 and nothing
    of it is enqueued, while a batch of 5 goes through."""
    settings = make_settings(RATE_LIMIT_SEND="5/min")
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        refused = c.post("/api/messages/batch", json={"messages": [item("sms")] * 6})
        assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert stored_ids(settings) == set()


def test_send_many_from_python(settings: Settings, queues: Queues) -> None:
    """The Python API: snake_case fields, one result per item, bad ones answered."""
    results = NotificationService(settings).send_many(
        [
            {"channel": "email", "to": "a@example.com", "subject": "Hi", "text": "Hello"},
            {"channel": "in_app", "user_id": "u-1", "title": "Hi", "message": "Hello"},
            {"channel": "sms", "to": "12"},
        ]
    )

    assert [("id" in r, "error" in r) for r in results] == [(True, False), (True, False), (False, True)]
    assert len(stored_ids(settings)) == 2
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(NotificationLog)) == 2
    assert queues.depths(["email", "in_app"]) == {"email": 1, "in_app": 1}
