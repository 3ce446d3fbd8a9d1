"""Idempotency keys over the gateway and the Python API: a key belongs to the credential
that used it (another server key, or the Python API, choosing the same key gets a message of
its own), the same request repeated gets the first message's id, and the same key with a
different request is refused with 409 ``idempotency_key_reused`` (item by item in a batch)
with nothing enqueued for it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import EventLog, NotificationLog
from shared.db.rls import system_scope
from shared.errors import IdempotencyKeyReused
from tests.conftest import ROTATED_KEY, SERVER_KEY, Queues
from tests.gateway.server import LiveServer

SMS = {"to": "+14155550100", "message": "Your code is 123456"}
OTHER_SMS = {"to": "+14155550100", "message": "Your code is 654321"}
FIRST_KEY = {"Authorization": f"Bearer {SERVER_KEY}"}
SECOND_KEY = {"Authorization": f"Bearer {ROTATED_KEY}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def rows(settings: Settings) -> int:
    with system_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(NotificationLog)) or 0)


def send(client: httpx.Client, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return client.post("/api/messages/sms", json=body, headers=headers)


def assert_key_reused(error: dict[str, Any]) -> None:
    assert error["code"] == "idempotency_key_reused"
    assert set(error) == {"code", "message", "details"}
    assert error["details"][0]["field"] == "idempotencyKey"


def test_another_server_keys_idempotency_key_is_not_shared(
    client: httpx.Client, settings: Settings, queues: Queues
) -> None:
    """Given a message sent with key "order-1" by one server key, when another server key
    sends its own message with "order-1", then it gets a new id and both messages are
    stored and enqueued (it neither learns the first id nor loses its message)."""
    first = send(client, {**SMS, "idempotencyKey": "order-1"}, FIRST_KEY)
    second = send(client, {**OTHER_SMS, "idempotencyKey": "order-1"}, SECOND_KEY)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] != second.json()["id"]
    assert rows(settings) == 2
    assert queues.depth("sms") == 2


def test_the_same_request_again_gets_the_first_id(client: httpx.Client, settings: Settings) -> None:
    """Given a send with a key, when the same request comes again (its JSON spelled
    differently: another key order, snake_case), then the first id comes back with 202 and
    nothing more is stored."""
    first = send(client, {**SMS, "idempotencyKey": "otp-7"}, FIRST_KEY)
    again = send(client, {"idempotency_key": "otp-7", "message": SMS["message"], "to": SMS["to"]}, FIRST_KEY)

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert rows(settings) == 1


def test_the_same_key_with_a_different_body_is_409(
    client: httpx.Client, settings: Settings, queues: Queues
) -> None:
    """Given a send with a key, when the same server key sends a different message with that
    key, then it is refused with 409 idempotency_key_reused in the JSON error shape, and
    only the first message is stored and enqueued."""
    first = send(client, {**SMS, "idempotencyKey": "otp-8"}, FIRST_KEY)
    reused = send(client, {**OTHER_SMS, "idempotencyKey": "otp-8"}, FIRST_KEY)

    assert first.status_code == 202
    assert reused.status_code == 409
    assert_key_reused(reused.json()["error"])
    assert rows(settings) == 1
    assert queues.depth("sms") == 1


def test_the_transactional_flag_is_part_of_the_request(client: httpx.Client, settings: Settings) -> None:
    """Given a send with a key and no flag, then the same send with ``transactional: false`` is
    a repeat (the first id), and with ``transactional: true`` another request (409); a request
    without the flag fingerprints as it did before the flag existed."""
    first = send(client, {**SMS, "idempotencyKey": "otp-9"}, FIRST_KEY)
    same = send(client, {**SMS, "idempotencyKey": "otp-9", "transactional": False}, FIRST_KEY)
    other = send(client, {**SMS, "idempotencyKey": "otp-9", "transactional": True}, FIRST_KEY)

    assert same.json()["id"] == first.json()["id"]
    assert other.status_code == 409
    assert_key_reused(other.json()["error"])
    request = NotificationService(settings).validate(Channel.SMS, {**SMS, "idempotencyKey": "otp-9"})
    before_the_flag = request.model_dump(mode="json", exclude={"template_ref", "transactional"})
    canonical = json.dumps(
        ["sms", before_the_flag], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    with system_scope(settings.database_url) as session:
        stored = session.scalar(select(NotificationLog.request_fingerprint))
    assert stored == hashlib.sha256(canonical.encode()).hexdigest()


def test_batch_items_follow_the_same_rules(client: httpx.Client, settings: Settings) -> None:
    """Given a batch whose items carry keys, then an item repeating an earlier request gets
    its id, an item reusing a key for a different message is refused on its own (the others
    are accepted), and another server key's batch with the same keys gets messages of its
    own."""
    earlier = send(client, {**SMS, "idempotencyKey": "b-1"}, FIRST_KEY).json()["id"]
    batch = [
        {"channel": "sms", **SMS, "idempotencyKey": "b-1"},
        {"channel": "sms", **OTHER_SMS, "idempotencyKey": "b-1"},
        {"channel": "sms", **OTHER_SMS, "idempotencyKey": "b-2"},
        {"channel": "sms", **SMS, "idempotencyKey": "b-2"},
    ]

    mine = client.post("/api/messages/batch", json={"messages": batch}, headers=FIRST_KEY)
    theirs = client.post("/api/messages/batch", json={"messages": batch[2:]}, headers=SECOND_KEY)

    assert mine.status_code == 202
    results = mine.json()["results"]
    assert results[0] == {"id": earlier, "status": "queued"}
    assert_key_reused(results[1]["error"])
    assert "id" in results[2]
    assert_key_reused(results[3]["error"])
    assert theirs.status_code == 202
    their_ids = [r.get("id") for r in theirs.json()["results"]]
    assert their_ids[0] is not None and their_ids[0] != results[2]["id"]
    assert_key_reused(theirs.json()["results"][1]["error"])
    assert rows(settings) == 3


def test_the_python_api_has_keys_of_its_own(client: httpx.Client, settings: Settings) -> None:
    """Given a key used by a server key over HTTP, then the Python API's send with that key
    is a message of its own; repeated it gets its own first id, and with a different body
    it raises IdempotencyKeyReused (a ValidationError: HTTP 409's code)."""
    over_http = send(client, {**SMS, "idempotencyKey": "shared-name"}, FIRST_KEY).json()["id"]
    service = NotificationService(settings)

    first = service.send_sms(**SMS, idempotency_key="shared-name")
    again = service.send_sms(**SMS, idempotency_key="shared-name")
    with pytest.raises(IdempotencyKeyReused) as refused:
        service.send_sms(**OTHER_SMS, idempotency_key="shared-name")

    assert first == again != over_http
    assert refused.value.status_code == 409 and refused.value.code == "idempotency_key_reused"
    assert rows(settings) == 2


def test_send_many_refuses_a_reused_key_item_by_item(settings: Settings) -> None:
    """send_many: an item reusing a key for another message gets the error item, the others
    are sent."""
    service = NotificationService(settings)
    first = service.send_sms(**SMS, idempotency_key="many-1")

    results = service.send_many(
        [
            {"channel": "sms", **SMS, "idempotency_key": "many-1"},
            {"channel": "sms", **OTHER_SMS, "idempotency_key": "many-1"},
            {"channel": "sms", **OTHER_SMS},
        ]
    )

    assert results[0] == {"id": first, "status": "queued"}
    assert_key_reused(results[1]["error"])
    assert results[2]["status"] == "queued"
    assert rows(settings) == 2


def test_event_keys_follow_the_same_rules(client: httpx.Client, settings: Settings) -> None:
    """POST /api/events: the same event again gets the first id, a different event with the
    key is 409 idempotency_key_reused, and another server key's event with the key is an
    event of its own."""
    event = {"eventType": "order.created", "userId": "u1", "data": {"order": 1}, "idempotencyKey": "ev-1"}

    first = client.post("/api/events", json=event, headers=FIRST_KEY)
    again = client.post("/api/events", json=event, headers=FIRST_KEY)
    reused = client.post("/api/events", json={**event, "data": {"order": 2}}, headers=FIRST_KEY)
    theirs = client.post("/api/events", json={**event, "data": {"order": 2}}, headers=SECOND_KEY)

    assert first.status_code == again.status_code == theirs.status_code == 202
    assert again.json()["id"] == first.json()["id"] != theirs.json()["id"]
    assert reused.status_code == 409
    assert_key_reused(reused.json()["error"])
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(EventLog)) == 2


def test_the_idempotency_key_header_is_the_bodys_key(client: httpx.Client, settings: Settings) -> None:
    """The Idempotency-Key header works as the body's idempotencyKey: a retry with the header
    gets the first id, the same key in the body names the same message, a different body
    under it is 409, and a header contradicting the body's key is 422; one message stored."""
    with_header = {**FIRST_KEY, "Idempotency-Key": "hdr-1"}

    first = send(client, SMS, with_header)
    again = send(client, SMS, with_header)
    in_body = send(client, {**SMS, "idempotencyKey": "hdr-1"}, FIRST_KEY)
    reused = send(client, OTHER_SMS, with_header)
    contradicting = send(client, {**SMS, "idempotencyKey": "other"}, with_header)

    assert first.status_code == again.status_code == in_body.status_code == 202
    assert again.json()["id"] == in_body.json()["id"] == first.json()["id"]
    assert reused.status_code == 409
    assert contradicting.status_code == 422
    assert contradicting.json()["error"]["details"][0]["field"] == "idempotencyKey"
    assert rows(settings) == 1
