"""``/api/events``, ``/api/rules`` and ``/api/users/{id}/contacts`` over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import SERVER_KEY, Queues
from tests.gateway.server import LiveServer

RULE = {
    "name": "payment failed",
    "eventType": "subscription.payment_failed",
    "channels": ["email", "in-app"],
    "templateKey": "payment-failed",
    "conditions": ["data.amount > 100", {"field": "data.plan", "op": "==", "value": "pro"}],
    "priority": 5,
    "critical": False,
    "delayMs": 0,
}


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        for channel, parts in (
            ("email", {"subject": "Failed", "text": "Payment failed"}),
            ("in_app", {"title": "Failed", "message": "Payment failed"}),
        ):
            saved = c.post("/api/templates", json={"key": "payment-failed", "channel": channel, **parts})
            assert saved.status_code == 201, saved.text
        yield c


def test_rules_crud(client: httpx.Client) -> None:
    created = client.post("/api/rules", json=RULE)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["channels"] == ["email", "in_app"]
    assert rule["transactional"] is False
    assert rule["conditions"] == [
        {"field": "data.amount", "op": ">", "value": 100},
        {"field": "data.plan", "op": "==", "value": "pro"},
    ]

    updated = client.put(f"/api/rules/{rule['id']}", json={**RULE, "critical": True, "channels": ["email"]})
    assert (updated.json()["critical"], updated.json()["channels"]) == (True, ["email"])
    assert client.get(f"/api/rules/{rule['id']}").json()["critical"] is True
    patched = client.patch(f"/api/rules/{rule['id']}", json={"transactional": True})
    assert (patched.json()["transactional"], patched.json()["critical"]) == (True, True)
    assert [r["id"] for r in client.get("/api/rules").json()["items"]] == [rule["id"]]
    assert client.delete(f"/api/rules/{rule['id']}").status_code == 204
    assert client.get(f"/api/rules/{rule['id']}").status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"channels": ["webhook"]}, "channels"),
        ({"channels": ["pigeon"]}, "channels"),
        ({"channels": ["sms"]}, "templateKey"),
        ({"conditions": ["data.amount >>> 1"]}, "conditions"),
        ({"conditions": [{"field": "__class__", "op": "==", "value": 1}]}, "conditions"),
        ({"delayMs": -1}, "delayMs"),
        ({"transactional": "yes"}, "transactional"),
    ],
)
def test_invalid_rules_are_refused(client: httpx.Client, changes: dict[str, Any], field: str) -> None:
    response = client.post("/api/rules", json={**RULE, **changes})

    assert response.status_code == 422, response.text
    assert field in {d["field"].split(".")[0] for d in response.json()["error"]["details"]}


def test_post_event_queues_it(client: httpx.Client, queues: Queues) -> None:
    response = client.post(
        "/api/events",
        json={"eventType": "subscription.payment_failed", "userId": "u1", "data": {"amount": 5}},
    )

    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert queues.depth("events") == 1
    event = client.get(f"/api/events/{response.json()['id']}").json()
    assert (event["status"], event["eventType"], event["data"]) == (
        "queued",
        "subscription.payment_failed",
        {"amount": 5},
    )


@pytest.mark.parametrize(
    "body", [{}, {"eventType": ""}, {"eventType": "x", "data": [1]}, {"eventType": "x", "y": 1}]
)
def test_bad_events_are_refused(client: httpx.Client, queues: Queues, body: dict[str, Any]) -> None:
    assert client.post("/api/events", json=body).status_code == 422
    assert queues.depth("events") == 0


@pytest.mark.parametrize(
    "event_type", [42, {"eventType": "order.created"}, ["x"], "order created", "{'a': 1}"]
)
def test_what_is_not_an_event_type_is_refused(client: httpx.Client, queues: Queues, event_type: Any) -> None:
    response = client.post("/api/events", json={"eventType": event_type, "userId": "u1"})

    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == ["eventType"]
    assert queues.depth("events") == 0


def test_contacts_are_validated_and_replaced(client: httpx.Client) -> None:
    put = client.put("/api/users/u1/contacts", json={"email": "Ann@Example.com", "phone": "+14155550100"})
    assert put.status_code == 200
    assert put.json() == {
        "userId": "u1",
        "email": "Ann@example.com",
        "phone": "+14155550100",
        "locale": None,
        "slackUserId": None,
        "slackWebhookUrl": None,
        "teamsWebhookUrl": None,
    }
    assert client.put("/api/users/u1/contacts", json={"phone": "12"}).status_code == 422
    assert client.get("/api/users/u1/contacts").json()["phone"] == "+14155550100"
    assert client.get("/api/users/nobody/contacts").status_code == 404
