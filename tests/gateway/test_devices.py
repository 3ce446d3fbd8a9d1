"""Where push and chat messages go, as the gateway keeps it: users' devices (browser push
subscriptions, FCM and APNs tokens), chat webhook URLs in contacts and rules (sealed at
rest, masked when read), and the VAPID public key pages subscribe with."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import jwt
import pytest
from sqlalchemy import select

from producer.gateway.app import create_app
from shared.config import Settings, get_settings, set_settings
from shared.db.models import NotificationRule, PushTargetRow, UserContact
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, USER_TOKEN_SECRET
from tests.gateway.server import LiveServer
from tests.sinks.push_service import PushService
from workers.providers.webpush import generate_vapid_keys

FCM_TOKEN = "fcm-token:" + "A" * 140
APNS_TOKEN = "ab" * 32
SLACK_HOOK = "https://hooks.slack.com/services/T0001/B0001/secretpart"
TEAMS_HOOK = "https://example.webhook.office.com/webhookb2/secret-part/IncomingWebhook/x/y"


@pytest.fixture(scope="module")
def vapid() -> tuple[str, str]:
    return generate_vapid_keys()


@pytest.fixture
def client(make_settings: Callable[..., Settings], vapid: tuple[str, str]) -> Iterator[httpx.Client]:
    settings = make_settings(VAPID_PRIVATE_KEY=vapid[0], VAPID_SUBJECT="mailto:ops@example.com")
    set_settings(settings)
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {SERVER_KEY}"
        yield c
    set_settings(None)


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    with PushService() as service:
        yield service


def as_user(user_id: str) -> dict[str, str]:
    token = jwt.encode({"sub": user_id, "exp": 2**31 - 1}, USER_TOKEN_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def test_the_vapid_public_key_is_public_and_matches_the_private_one(
    client: httpx.Client, vapid: tuple[str, str]
) -> None:
    answer = client.get("/api/push/vapid-public-key", headers={"Authorization": ""})
    assert answer.status_code == 200
    assert answer.json() == {"publicKey": vapid[1]}


def test_without_vapid_the_key_is_not_found(make_settings: Callable[..., Settings]) -> None:
    with LiveServer(create_app(make_settings())) as server:
        answer = httpx.get(f"{server.url}/api/push/vapid-public-key")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_configured"


def test_a_user_registers_lists_and_removes_a_browser(
    client: httpx.Client, push_service: PushService
) -> None:
    subscription = push_service.subscribe().as_json()

    created = client.post(
        "/api/notifications/devices", json={**subscription, "label": "Firefox"}, headers=as_user("ann")
    )

    assert created.status_code == 201, created.text
    device = created.json()
    assert device["kind"] == "web" and device["label"] == "Firefox"
    # The endpoint's path is a capability: only the push service's origin is shown.
    assert device["token"] == f"{push_service.origin}/…"
    listed = client.get("/api/notifications/devices", headers=as_user("ann")).json()
    assert [d["id"] for d in listed["items"]] == [device["id"]] and listed["nextCursor"] is None
    assert client.get("/api/notifications/devices", headers=as_user("bob")).json()["items"] == []
    assert (
        client.delete(f"/api/notifications/devices/{device['id']}", headers=as_user("bob")).status_code == 404
    )
    assert (
        client.delete(f"/api/notifications/devices/{device['id']}", headers=as_user("ann")).status_code == 204
    )
    assert client.get("/api/notifications/devices", headers=as_user("ann")).json()["items"] == []


def test_a_device_registered_again_moves_to_its_new_user(client: httpx.Client) -> None:
    body = {"platform": "android", "token": FCM_TOKEN, "appId": "com.example.app"}

    first = client.post("/api/users/ann/devices", json=body).json()
    again = client.post("/api/users/bob/devices", json=body).json()

    assert again["id"] == first["id"] and again["userId"] == "bob"
    assert client.get("/api/users/ann/devices").json()["items"] == []
    assert [d["kind"] for d in client.get("/api/users/bob/devices").json()["items"]] == ["fcm"]
    assert client.get("/api/users/bob/devices").json()["items"][0]["token"] == FCM_TOKEN[:8] + "…"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"platform": "ios", "token": "not-hex"}, None),
        ({"platform": "android", "token": "short"}, None),
        ({"platform": "android", "service": "apns", "token": APNS_TOKEN}, None),
        ({"platform": "windows", "token": FCM_TOKEN}, "platform"),
        ({"endpoint": "https://push.example.com/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}, "keys"),
        ({"endpoint": "ftp://push.example.com/x", "keys": {"p256dh": "x", "auth": "y"}}, "endpoint"),
    ],
)
def test_bad_devices_are_refused(client: httpx.Client, body: dict[str, object], field: str | None) -> None:
    answer = client.post("/api/users/ann/devices", json=body)

    assert answer.status_code == 422, answer.text
    if field is not None:
        assert field in {d["field"].split(".")[0] for d in answer.json()["error"]["details"]}
    with system_scope(client_settings_url()) as session:
        assert session.scalars(select(PushTargetRow)).all() == []


def test_an_ios_token_goes_to_apns_unless_the_app_uses_firebase(client: httpx.Client) -> None:
    apns = client.post("/api/users/ann/devices", json={"platform": "ios", "token": APNS_TOKEN}).json()
    fcm = client.post(
        "/api/users/ann/devices", json={"platform": "ios", "service": "fcm", "token": FCM_TOKEN}
    ).json()

    assert (apns["kind"], fcm["kind"]) == ("apns", "fcm")


def test_chat_webhooks_in_contacts_are_sealed_and_masked(client: httpx.Client) -> None:
    put = client.put(
        "/api/users/ann/contacts",
        json={
            "email": "ann@example.com",
            "slackUserId": "U0ANN",
            "slackWebhookUrl": SLACK_HOOK,
            "teamsWebhookUrl": TEAMS_HOOK,
        },
    )

    assert put.status_code == 200, put.text
    shown = put.json()
    assert shown["slackUserId"] == "U0ANN"
    assert shown["slackWebhookUrl"] == "https://hooks.slack.com/…"
    assert shown["teamsWebhookUrl"] == "https://example.webhook.office.com/…"
    with system_scope(client_settings_url()) as session:
        row = session.get(UserContact, "ann")
        assert row is not None and row.slack_webhook_url and row.slack_webhook_url.startswith("fernet:")
        sealed = row.slack_webhook_url
    # What GET showed, given back, keeps the stored URL; a PATCH that leaves it out too.
    assert client.put(
        "/api/users/ann/contacts", json={**shown, "userId": None} | {"userId": None}
    ).status_code in (200, 422)
    kept = client.put("/api/users/ann/contacts", json={k: v for k, v in shown.items() if k != "userId"})
    assert kept.status_code == 200
    assert client.patch("/api/users/ann/contacts", json={"phone": "+14155550100"}).json()[
        "slackWebhookUrl"
    ] == ("https://hooks.slack.com/…")
    with system_scope(client_settings_url()) as session:
        assert session.get(UserContact, "ann").slack_webhook_url == sealed  # type: ignore[union-attr]
    # The masked form cannot stand for a URL nobody stored.
    fresh = client.put("/api/users/bob/contacts", json={"slackWebhookUrl": "https://hooks.slack.com/…"})
    assert fresh.status_code == 422


def test_a_chat_message_to_a_user_goes_where_their_contacts_say(client: httpx.Client) -> None:
    client.put("/api/users/ann/contacts", json={"slackUserId": "U0ANN", "teamsWebhookUrl": TEAMS_HOOK})

    slack = client.post("/api/messages/chat", json={"service": "slack", "userId": "ann", "text": "hi"}).json()
    teams = client.post("/api/messages/chat", json={"service": "teams", "userId": "ann", "text": "hi"}).json()

    assert client.get(f"/api/messages/{slack['id']}").json()["recipient"] == "slack:U0ANN"
    teams_view = client.get(f"/api/messages/{teams['id']}").json()
    assert teams_view["recipient"] == "teams:user:ann"
    assert "secret-part" not in str(teams_view)
    story = client.get(f"/api/messages/{teams['id']}/story").json()
    assert "secret-part" not in str(story)
    direct = client.post(
        "/api/messages/chat", json={"service": "teams", "webhookUrl": TEAMS_HOOK, "text": "hi"}
    )
    assert direct.status_code == 202
    assert "secret-part" not in str(client.get(f"/api/messages/{direct.json()['id']}/story").json())


def test_a_rules_chat_webhook_is_sealed_and_masked(client: httpx.Client) -> None:
    template = {
        "key": "deploy.done",
        "channel": "chat",
        "text": "Deploy {{version}} finished",
        "sampleData": {"version": "1"},
    }
    assert client.post("/api/templates", json=template).status_code == 201
    rule = {
        "name": "Deploys to Teams",
        "eventType": "deploy.done",
        "channels": ["chat"],
        "templateKey": "deploy.done",
        "chat": {"service": "teams", "webhookUrl": TEAMS_HOOK},
    }

    created = client.post("/api/rules", json=rule)

    assert created.status_code == 201, created.text
    assert "secret-part" not in created.text
    assert created.json()["chat"]["webhookUrl"].endswith("/…")
    with system_scope(client_settings_url()) as session:
        stored = session.scalars(select(NotificationRule.chat)).one()
        assert stored["webhookUrl"].startswith("fernet:")
    # A PATCH of something else keeps the sealed URL.
    patched = client.patch(f"/api/rules/{created.json()['id']}", json={"priority": 5})
    assert patched.status_code == 200, patched.text
    with system_scope(client_settings_url()) as session:
        assert session.scalars(select(NotificationRule.chat)).one()["webhookUrl"] == stored["webhookUrl"]


def client_settings_url() -> str:
    return get_settings().database_url
