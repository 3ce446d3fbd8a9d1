"""PUT replaces a resource's whole document and PATCH merges a JSON merge patch into it, the
same way on every resource, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer.gateway.app import create_app
from shared.config import Settings
from shared.db.models import WebhookConfiguration, utcnow
from shared.db.session import session_scope
from tests.conftest import SERVER_KEY
from tests.gateway.databases import BACKENDS, on_backend
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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """The settings of each kind of database the service runs on, migrated."""
    return on_backend(request.param, settings, tmp_path)


@pytest.fixture
def database(backend: Settings) -> str:
    """The URL of ``backend``'s database, to read what a request stored."""
    return backend.database_url


@pytest.fixture
def client(backend: Settings) -> Iterator[httpx.Client]:
    """A live gateway on ``backend`` with a server key and an email template."""
    app = create_app(backend)
    auth = {"Authorization": f"Bearer {SERVER_KEY}"}
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=auth, timeout=30) as c:
        template = {"key": "payment-failed", "channel": "email", "subject": "S", "text": "Payment failed"}
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


def test_a_rule_digest_and_throttle_are_stored_merged_and_checked(client: httpx.Client) -> None:
    """Given a rule with a digest and a throttle, when a PATCH changes the digest's window, then
    its key and maxItems stay; a malformed window or throttle is refused with the field named
    and changes nothing."""
    body = {
        **RULE,
        "digest": {"window": "10m", "key": "data.orderId", "maxItems": 20},
        "throttle": {"limit": 3, "per": "1h", "then": "digest"},
    }
    rule = ok(client.post("/api/rules", json=body), 201)
    assert (rule["digest"], rule["throttle"]) == (body["digest"], body["throttle"])

    patched = ok(patch(client, f"/api/rules/{rule['id']}", {"digest": {"window": None, "cadence": "hourly"}}))

    assert patched["digest"] == {"cadence": "hourly", "key": "data.orderId", "maxItems": 20}
    assert refused(patch(client, f"/api/rules/{rule['id']}", {"digest": {"window": "soon"}})) == [
        "digest.window"
    ]
    assert refused(patch(client, f"/api/rules/{rule['id']}", {"throttle": {"then": "drop"}})) == [
        "throttle.then"
    ]
    assert client.get(f"/api/rules/{rule['id']}").json() == patched


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
    assert replaced == {
        "userId": "u1",
        "email": None,
        "phone": None,
        "locale": "fr",
        "slackUserId": None,
        "slackWebhookUrl": None,
        "teamsWebhookUrl": None,
    }
    assert refused(patch(client, path, {"phone": "12"})) == ["phone"]


HOOKS = "/api/webhooks/configurations"
HOOK_URL = "http://127.0.0.1:9/hook"
HOOK = {
    "url": HOOK_URL,
    "description": "orders",
    "eventTypes": ["order.created"],
    "headers": {"X-A": "a-value", "X-B": "b-value"},
    "rateLimitPerSecond": 5,
    "maxRetries": 3,
    "retryScheduleMs": [1000, 2000],
    "ordered": True,
    "ownerEmail": "ops@example.com",
}


def stored_secret(database: str, endpoint_id: str) -> str:
    """The sealed secret as stored: unchanged unless regenerated."""
    with session_scope(database) as session:
        row = session.get(WebhookConfiguration, endpoint_id)
        assert row is not None
        return row.secret


def test_an_endpoint_put_resets_what_it_leaves_out_and_keeps_the_secret(
    client: httpx.Client, database: str
) -> None:
    created = ok(client.post(HOOKS, json=HOOK), 201)
    secret = stored_secret(database, created["id"])

    replaced = ok(client.put(f"{HOOKS}/{created['id']}", json={"url": HOOK_URL}))

    assert (replaced["description"], replaced["eventTypes"], replaced["headers"]) == (None, [], {})
    assert (replaced["rateLimitPerSecond"], replaced["maxRetries"], replaced["retryScheduleMs"]) == (
        None,
        None,
        None,
    )
    assert (replaced["ordered"], replaced["ownerEmail"], replaced["active"]) == (False, None, True)
    assert stored_secret(database, created["id"]) == secret
    assert refused(client.put(f"{HOOKS}/{created['id']}", json={"description": "x"})) == ["url"]
    assert refused(client.put(f"{HOOKS}/{created['id']}", json={"url": HOOK_URL, "secret": "whsec_x"})) == [
        "secret"
    ]


def test_an_endpoint_patch_merges_headers_by_name_and_keeps_the_rest(
    client: httpx.Client, database: str
) -> None:
    created = ok(client.post(HOOKS, json=HOOK), 201)
    secret = stored_secret(database, created["id"])
    path = f"{HOOKS}/{created['id']}"

    patched = ok(patch(client, path, {"headers": {"X-A": None, "X-C": "c-value"}, "description": None}))

    assert set(patched["headers"]) == {"X-B", "X-C"}
    assert patched["description"] is None
    kept = (
        "url",
        "eventTypes",
        "rateLimitPerSecond",
        "maxRetries",
        "retryScheduleMs",
        "ordered",
        "ownerEmail",
    )
    assert {k: patched[k] for k in kept} == {k: created[k] for k in kept}
    assert stored_secret(database, created["id"]) == secret
    assert refused(patch(client, path, {"url": None})) == ["url"]


def test_a_disabled_endpoint_stays_disabled_through_a_patch_but_not_a_put(
    client: httpx.Client, database: str
) -> None:
    """Given an endpoint disabled for failing, a PATCH of its description leaves it disabled;
    a PUT without ``active`` takes the default, true, and re-enables it."""
    endpoint_id = ok(client.post(HOOKS, json=HOOK), 201)["id"]
    with session_scope(database) as session:
        row = session.get(WebhookConfiguration, endpoint_id)
        assert row is not None
        row.active, row.disabled_at, row.disabled_reason = False, utcnow(), "failing"

    patched = ok(patch(client, f"{HOOKS}/{endpoint_id}", {"description": "still off"}))
    replaced = ok(client.put(f"{HOOKS}/{endpoint_id}", json={"url": HOOK_URL}))

    assert (patched["active"], patched["disabledReason"]) == (False, "failing")
    assert (replaced["active"], replaced["disabledAt"], replaced["disabledReason"]) == (True, None, None)


def test_a_template_patch_saves_the_next_version_from_the_current_one(client: httpx.Client) -> None:
    """Given an email template with a subject, text and HTML, when a PATCH changes the subject
    and removes the HTML, then version 2 has the new subject, the same text and no HTML, and
    version 1 is unchanged."""
    key = "/api/templates/payment-failed"
    ok(client.put(key, json={"channel": "email", "subject": "Old", "text": "Text", "html": "<p>H</p>"}))

    patched = ok(patch(client, key, {"channel": "email", "subject": "New", "html": None}))

    assert (patched["version"], patched["subject"], patched["text"], patched["html"]) == (
        3,
        "New",
        "Text",
        None,
    )
    assert ok(client.get(key, params={"channel": "email", "version": 2}))["html"] == "<p>H</p>"


def test_a_template_put_replaces_every_part(client: httpx.Client) -> None:
    key = "/api/templates/payment-failed"
    ok(client.put(key, json={"channel": "email", "subject": "S", "text": "Text", "html": "<p>H</p>"}))

    replaced = ok(client.put(key, json={"channel": "email", "subject": "S", "html": "<p>Only</p>"}))

    assert (replaced["text"], replaced["html"]) == (None, "<p>Only</p>")


def test_a_template_patch_names_an_existing_version(client: httpx.Client) -> None:
    key = "/api/templates/payment-failed"

    assert refused(patch(client, key, {"subject": "x"})) == ["channel"]
    assert patch(client, key, {"channel": "sms", "sms": "x"}).status_code == 404
    assert patch(client, key, {"channel": "email", "locale": "fr", "subject": "x"}).status_code == 404
    assert patch(client, "/api/templates/nothing", {"channel": "email", "subject": "x"}).status_code == 404
    no_subject = patch(client, key, {"channel": "email", "subject": None})
    assert no_subject.status_code == 400
    assert [d["part"] for d in no_subject.json()["error"]["details"]] == ["subject"]
