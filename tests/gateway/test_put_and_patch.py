"""PUT replaces a resource's whole document and PATCH merges a JSON merge patch into it, the
same way on every resource, on PostgreSQL and on the embedded SQLite."""

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

RULE = {
    "name": "payment failed",
    "eventType": "subscription.payment_failed",
    "channels": ["email"],
    "templateKey": "payment-failed",
    "conditions": ["data.amount > 100"],
    "priority": 5,
    "critical": True,
    "delayMs": 1000,
    "active": False,
}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(params=["postgresql", "sqlite"])
def client(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """A live gateway with a server key and an email template, on each kind of database."""
    url = settings.database_url
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'documents.db'}"
        upgrade(url)
    app = create_app(settings_with(settings, database_url=url))
    with (
        LiveServer(app) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {SERVER_KEY}"}, timeout=30) as c,
    ):
        template = {
            "key": "payment-failed",
            "channel": "email",
            "subject": "Failed",
            "text": "Payment failed",
        }
        assert c.post("/api/templates", json=template).status_code == 201
        yield c


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response) -> list[str]:
    """The fields a 422 names."""
    assert response.status_code == 422, response.text
    return [str(d.get("field")) for d in response.json()["error"]["details"]]


def patch(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.patch(path, json=body, headers=MERGE_PATCH)


def test_a_rule_put_without_optional_fields_resets_them(client: httpx.Client) -> None:
    """Given a rule with conditions, priority, critical, delay and inactive, when it is PUT
    with only its required fields, then each of the others takes its default: no conditions."""
    rule = ok(client.post("/api/rules", json=RULE), 201)

    required = {k: RULE[k] for k in ("name", "eventType", "channels", "templateKey")}
    replaced = ok(client.put(f"/api/rules/{rule['id']}", json=required))

    assert (replaced["conditions"], replaced["priority"], replaced["critical"]) == ([], 0, False)
    assert (replaced["delayMs"], replaced["active"]) == (0, True)
    assert client.get(f"/api/rules/{rule['id']}").json() == replaced


def test_a_rule_put_without_a_required_field_is_refused(client: httpx.Client) -> None:
    rule = ok(client.post("/api/rules", json=RULE), 201)

    without_channels = {k: v for k, v in RULE.items() if k != "channels"}

    assert refused(client.put(f"/api/rules/{rule['id']}", json=without_channels)) == ["channels"]
    assert client.get(f"/api/rules/{rule['id']}").json() == rule


def test_a_rule_patch_changes_the_fields_given_and_null_restores_a_default(client: httpx.Client) -> None:
    rule = ok(client.post("/api/rules", json=RULE), 201)

    patched = ok(patch(client, f"/api/rules/{rule['id']}", {"priority": 9, "conditions": None}))

    assert (patched["priority"], patched["conditions"]) == (9, [])
    unchanged = {k: v for k, v in rule.items() if k not in ("priority", "conditions", "updatedAt")}
    assert {k: v for k, v in patched.items() if k in unchanged} == unchanged


def test_a_rule_patch_may_not_remove_a_required_field_or_add_an_unknown_one(client: httpx.Client) -> None:
    rule = ok(client.post("/api/rules", json=RULE), 201)

    assert refused(patch(client, f"/api/rules/{rule['id']}", {"name": None})) == ["name"]
    assert refused(patch(client, f"/api/rules/{rule['id']}", {"colour": "red"})) == ["colour"]
    assert client.patch("/api/rules/no-such-rule", json={"priority": 1}).status_code == 404
    assert client.get(f"/api/rules/{rule['id']}").json() == rule


def test_contacts_put_replaces_and_patch_merges(client: httpx.Client) -> None:
    """Given no contacts, when a PATCH gives an email, then the user has only that; a PATCH of
    the phone keeps the email; null clears it; a PUT with only a locale clears the rest."""
    path = "/api/users/u1/contacts"

    first = ok(patch(client, path, {"email": "Ann@Example.com"}))
    second = ok(patch(client, path, {"phone": "+14155550100"}))
    cleared = ok(patch(client, path, {"email": None}))
    replaced = ok(client.put(path, json={"locale": "fr"}))

    assert (first["email"], first["phone"]) == ("Ann@example.com", None)
    assert (second["email"], second["phone"]) == ("Ann@example.com", "+14155550100")
    assert (cleared["email"], cleared["phone"]) == (None, "+14155550100")
    assert replaced == {"userId": "u1", "email": None, "phone": None, "locale": "fr"}
    assert refused(patch(client, path, {"phone": "12"})) == ["phone"]
