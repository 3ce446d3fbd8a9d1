"""``Idempotency-Key`` on the POSTs that create templates, rules and webhook endpoints and on
the test notification: a retry of the same request gets what the first one created (201
again, marked ``Idempotent-Replayed``), the same key with another request is refused with
409 ``idempotency_key_reused``, and a key belongs to its credential, on PostgreSQL and on
the embedded SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import ROTATED_KEY, SERVER_KEY, Queues
from tests.gateway.databases import BACKENDS, on_backend
from tests.gateway.inbox import user_headers
from tests.gateway.server import LiveServer

FIRST_KEY = {"Authorization": f"Bearer {SERVER_KEY}"}
SECOND_KEY = {"Authorization": f"Bearer {ROTATED_KEY}"}
#: Requests racing with one key.
RACERS = 8


@dataclass(frozen=True)
class Resource:
    """A kind of resource a POST creates: where, a body, and another body."""

    path: str
    body: dict[str, Any]
    other: dict[str, Any]


TEMPLATE = Resource(
    "/api/templates",
    {"key": "welcome", "channel": "sms", "sms": "Welcome {{name}}", "sampleData": {"name": "Ann"}},
    {"key": "welcome", "channel": "sms", "sms": "Hello {{name}}", "sampleData": {"name": "Ann"}},
)
RULE = Resource(
    "/api/rules",
    {"name": "welcome", "eventType": "user.created", "channels": ["sms"], "templateKey": "base"},
    {"name": "welcome", "eventType": "user.deleted", "channels": ["sms"], "templateKey": "base"},
)
ENDPOINT = Resource(
    "/api/webhooks/configurations",
    {"url": "http://127.0.0.1:9/hook", "description": "orders"},
    {"url": "http://127.0.0.1:9/hook", "description": "refunds"},
)
RESOURCES = [pytest.param(r, id=r.path.rsplit("/", 1)[-1]) for r in (TEMPLATE, RULE, ENDPOINT)]


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """A live gateway on each kind of database, with the template the rules send."""
    with (
        LiveServer(create_app(on_backend(request.param, settings, tmp_path))) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        base = c.post(
            "/api/templates", json={"key": "base", "channel": "sms", "sms": "Hi"}, headers=FIRST_KEY
        )
        assert base.status_code == 201, base.text
        yield c


def post(
    client: httpx.Client,
    resource: Resource,
    body: dict[str, Any],
    key: str | None,
    auth: dict[str, str] = FIRST_KEY,
) -> httpx.Response:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return client.post(resource.path, json=body, headers=headers)


def listed(client: httpx.Client, resource: Resource) -> int:
    return len(client.get(resource.path, headers=FIRST_KEY).json()["items"])


@pytest.mark.parametrize("resource", RESOURCES)
def test_a_retry_gets_what_the_first_request_created(client: httpx.Client, resource: Resource) -> None:
    """Given a create with a key, when the same request comes again with that key, then it
    answers 201 with the same resource, marked as replayed, and nothing more exists."""
    before = listed(client, resource)

    first = post(client, resource, resource.body, "create-1")
    again = post(client, resource, dict(reversed(resource.body.items())), "create-1")

    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert listed(client, resource) == before + 1


@pytest.mark.parametrize("resource", RESOURCES)
def test_the_same_key_with_another_request_is_409(client: httpx.Client, resource: Resource) -> None:
    before = listed(client, resource)
    post(client, resource, resource.body, "create-2")

    reused = post(client, resource, resource.other, "create-2")

    assert reused.status_code == 409, reused.text
    error = reused.json()["error"]
    assert (error["code"], error["details"][0]["field"]) == ("idempotency_key_reused", "idempotencyKey")
    assert listed(client, resource) == before + 1


@pytest.mark.parametrize("resource", [pytest.param(RULE, id="rules"), pytest.param(ENDPOINT, id="endpoints")])
def test_a_key_belongs_to_its_credential_and_no_key_creates_each_time(
    client: httpx.Client, resource: Resource
) -> None:
    """Given a resource created with a key by one server key, then another server key using
    that key creates its own; and requests without a key each create one."""
    first = post(client, resource, resource.body, "shared-key")
    theirs = post(client, resource, resource.body, "shared-key", auth=SECOND_KEY)
    unkeyed = [post(client, resource, resource.body, None) for _ in range(2)]

    assert [r.status_code for r in (first, theirs, *unkeyed)] == [201] * 4
    assert len({r.json()["id"] for r in (first, theirs, *unkeyed)}) == 4


def test_the_body_may_carry_the_key_and_must_then_agree_with_the_header(client: httpx.Client) -> None:
    first = post(client, RULE, {**RULE.body, "idempotencyKey": "in-body"}, None)
    again = post(client, RULE, RULE.body, "in-body")
    disagreeing = post(client, RULE, {**RULE.body, "idempotencyKey": "one"}, "another")
    too_long = post(client, RULE, RULE.body, "k" * 256)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert disagreeing.status_code == too_long.status_code == 422
    assert disagreeing.json()["error"]["details"][0]["field"] == "idempotencyKey"


def test_an_endpoint_retry_gets_its_secret_again(client: httpx.Client) -> None:
    """A client that lost the answer to its create needs the secret it carried."""
    first = post(client, ENDPOINT, ENDPOINT.body, "hook-1").json()
    again = post(client, ENDPOINT, ENDPOINT.body, "hook-1").json()

    assert first["secret"].startswith("whsec_") and again["secret"] == first["secret"]


def test_a_retry_after_the_rule_was_deleted_is_404(client: httpx.Client) -> None:
    rule = post(client, RULE, RULE.body, "gone").json()
    assert client.delete(f"/api/rules/{rule['id']}", headers=FIRST_KEY).status_code == 204

    again = post(client, RULE, RULE.body, "gone")

    assert again.status_code == 404
    assert listed(client, RULE) == 0


@pytest.mark.parametrize("resource", RESOURCES)
def test_racing_requests_with_one_key_create_one_resource(client: httpx.Client, resource: Resource) -> None:
    """Given several identical creates with one key at once, then exactly one resource is
    created and every request is answered with it."""
    before = listed(client, resource)

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(lambda _: post(client, resource, resource.body, "race"), range(RACERS)))

    assert [a.status_code for a in answers] == [201] * RACERS, [a.text for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)
    assert listed(client, resource) == before + 1


def test_a_test_notification_retried_with_its_key_is_sent_once(client: httpx.Client, queues: Queues) -> None:
    """Given a test notification with a key, then the same key again gets the same message
    id and only one is enqueued; another user's same key is theirs."""
    keyed = {"Idempotency-Key": "test-1"}
    first = client.post("/api/notifications/test", headers={**user_headers("ann"), **keyed})
    again = client.post("/api/notifications/test", headers={**user_headers("ann"), **keyed})
    bobs = client.post("/api/notifications/test", headers={**user_headers("bob"), **keyed})

    assert first.status_code == again.status_code == bobs.status_code == 202
    assert again.json()["id"] == first.json()["id"] != bobs.json()["id"]
    assert queues.depth("in_app") == 2
