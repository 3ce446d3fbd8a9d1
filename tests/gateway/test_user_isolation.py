"""A user reaches only their own data over HTTP: with alice's token, or a server key acting
for alice, bob's notifications, preferences, contacts, events, messages and stream stay out
of reach, and naming one of bob's ids answers exactly as naming an id nobody has (nothing
reveals that it exists). On PostgreSQL row-level security backs the queries' own user
filters; on SQLite (the embedded default, no RLS) those filters are the only guard, so every
test runs on both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from producer.gateway.app import create_app
from shared.config import Settings
from shared.db.models import (
    EventLog,
    Notification,
    NotificationLog,
    UserContact,
    UserNotificationPreference,
    utcnow,
)
from shared.db.rls import system_scope
from shared.inbox import Position
from tests.conftest import SERVER_KEY
from tests.gateway.credentials import bearer, user_token
from tests.gateway.databases import BACKENDS, on_backend
from tests.gateway.server import LiveServer
from tests.gateway.sse import SseClient
from tests.waiting import wait_until

NOBODYS_ID = "00000000-0000-4000-8000-000000000000"
BOB_OLD_NOTIFICATION = "bob-old-notification"
BOB_NOTIFICATION = "bob-notification"
ALICE_NOTIFICATION = "alice-notification"
BOB_MESSAGE = "bob-message"
ALICE_MESSAGE = "alice-message"
BOB_EVENT = "bob-event"
BOB_EMAIL = "bob@example.com"


def seed(settings: Settings) -> None:
    now = utcnow()
    with system_scope(settings.database_url) as session:
        for ident, user, age in (
            (BOB_OLD_NOTIFICATION, "bob", timedelta(hours=1)),
            (ALICE_NOTIFICATION, "alice", timedelta(minutes=2)),
            (BOB_NOTIFICATION, "bob", timedelta(minutes=1)),
        ):
            created = now - age
            session.add(
                Notification(id=ident, user_id=user, title=ident, message="m", data={}, created_at=created)
            )
        session.add(
            UserNotificationPreference(
                user_id="bob", sms_enabled=False, event_preferences={}, created_at=now, updated_at=now
            )
        )
        session.add(UserContact(user_id="bob", email=BOB_EMAIL, created_at=now, updated_at=now))
        session.add(EventLog(id=BOB_EVENT, event_type="order.placed", user_id="bob", data={}, created_at=now))
        for ident, user, recipient in (
            (BOB_MESSAGE, "bob", BOB_EMAIL),
            (ALICE_MESSAGE, "alice", "a@example.com"),
        ):
            session.add(
                NotificationLog(
                    id=ident,
                    channel="email",
                    status="queued",
                    recipient=recipient,
                    user_id=user,
                    payload={"to": recipient, "subject": "private"},
                    max_attempts=3,
                    created_at=now,
                    updated_at=now,
                )
            )


def bobs_data(settings: Settings) -> dict[str, Any]:
    with system_scope(settings.database_url) as session:
        notifications = {
            n.id: (n.read_at is None and n.seen_at is None, n.deleted_at is None)
            for n in session.scalars(select(Notification).where(Notification.user_id == "bob"))
        }
        preferences = session.get(UserNotificationPreference, "bob")
        contact = session.get(UserContact, "bob")
        return {
            "notifications unseen, unread and kept": notifications,
            "sms enabled": preferences.sms_enabled if preferences else None,
            "email": contact.email if contact else None,
        }


BOB_UNTOUCHED = {
    "notifications unseen, unread and kept": {
        BOB_OLD_NOTIFICATION: (True, True),
        BOB_NOTIFICATION: (True, True),
    },
    "sms enabled": False,
    "email": BOB_EMAIL,
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """The settings of a gateway on each database the service runs on."""
    return on_backend(request.param, settings, tmp_path)


@pytest.fixture
def alice(backend: Settings) -> Iterator[httpx.Client]:
    seed(backend)
    with LiveServer(create_app(backend)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers.update(bearer(user_token("alice")))
        yield c


#: How alice calls: with her own token, or through the host application's server key.
TOKEN, SERVER_KEY_FOR_ALICE = "alice's token", "server key + X-User-Id: alice"


@dataclass(frozen=True)
class Probe:
    """A request of alice's naming one of bob's ids; ``{id}`` stands for the id."""

    what: str
    method: str
    path: str
    bobs_id: str
    #: The status both bob's id and an id nobody has get.
    status: int
    body: dict[str, Any] | None = None
    caller: str = TOKEN

    def request(self, client: httpx.Client, ident: str) -> tuple[int, Any]:
        body = json.loads(json.dumps(self.body).replace("{id}", ident)) if self.body else None
        headers = {**bearer(SERVER_KEY), "X-User-Id": "alice"} if self.caller == SERVER_KEY_FOR_ALICE else {}
        response = client.request(self.method, self.path.replace("{id}", ident), json=body, headers=headers)
        # Error messages echo the id asked for; everything else must be the same.
        return response.status_code, json.loads(response.text.replace(ident, "{id}"))

    def __str__(self) -> str:
        return f"{self.what} ({self.caller})"


IDS = {"ids": ["{id}"]}
CONTACTS = {"email": "eve@example.com"}
AS_SERVER = SERVER_KEY_FOR_ALICE
PROBES = [
    Probe("mark as seen", "POST", "/api/notifications/seen", BOB_NOTIFICATION, 200, IDS),
    Probe("record a click", "POST", "/api/notifications/clicked", BOB_NOTIFICATION, 200, IDS),
    Probe("mark as seen", "POST", "/api/notifications/seen", BOB_NOTIFICATION, 200, IDS, AS_SERVER),
    Probe("record a click", "POST", "/api/notifications/clicked", BOB_NOTIFICATION, 200, IDS, AS_SERVER),
    Probe("mark as read", "POST", "/api/notifications/mark-as-read", BOB_NOTIFICATION, 200, IDS),
    Probe("delete", "POST", "/api/notifications/delete", BOB_NOTIFICATION, 200, IDS),
    Probe("mark as read", "POST", "/api/notifications/mark-as-read", BOB_NOTIFICATION, 200, IDS, AS_SERVER),
    Probe("delete", "POST", "/api/notifications/delete", BOB_NOTIFICATION, 200, IDS, AS_SERVER),
    # A user token reads its own messages only: bob's is not found.
    Probe("read a message status", "GET", "/api/messages/{id}", BOB_MESSAGE, 404),
    # A user token is refused on server endpoints whatever the id: 403 either way.
    Probe("read an event", "GET", "/api/events/{id}", BOB_EVENT, 403),
    Probe("read contacts", "GET", "/api/users/{id}/contacts", "bob", 403),
    Probe("replace contacts", "PUT", "/api/users/{id}/contacts", "bob", 403, CONTACTS),
    # A server key acting for alice reaches alice's rows only: bob's are not found.
    Probe("read a message status", "GET", "/api/messages/{id}", BOB_MESSAGE, 404, caller=AS_SERVER),
    Probe("read an event", "GET", "/api/events/{id}", BOB_EVENT, 404, caller=AS_SERVER),
    Probe("read contacts", "GET", "/api/users/{id}/contacts", "bob", 404, caller=AS_SERVER),
    Probe("replace contacts", "PUT", "/api/users/{id}/contacts", "bob", 404, CONTACTS, AS_SERVER),
]


@pytest.mark.parametrize("probe", PROBES, ids=str)
def test_bobs_id_answers_like_an_id_nobody_has(backend: Settings, alice: httpx.Client, probe: Probe) -> None:
    """Given bob's data, when alice names one of bob's ids, then she gets the answer an
    unknown id gets, and bob's data is untouched."""
    with_bobs, with_nobodys = probe.request(alice, probe.bobs_id), probe.request(alice, NOBODYS_ID)

    assert with_bobs == with_nobodys
    assert with_bobs[0] == probe.status
    assert bobs_data(backend) == BOB_UNTOUCHED


def test_alice_sees_only_her_own(backend: Settings, alice: httpx.Client) -> None:
    """Given notifications and preferences of alice and bob, then alice's feed, unread count,
    preferences and stream (resumed from one of bob's event ids) show only hers, and her
    bulk actions touch only hers."""
    feed = alice.get("/api/notifications").json()
    count = alice.get("/api/notifications/unread-count").json()
    preferences = alice.get("/api/notifications/preferences").json()
    read_all = alice.post("/api/notifications/mark-all-as-read", json={}).json()
    resume_from = Position(utcnow() - timedelta(hours=2), BOB_OLD_NOTIFICATION).text()
    with SseClient(
        str(alice.base_url.join("/api/notifications/stream")),
        headers={"Authorization": alice.headers["Authorization"], "Last-Event-ID": resume_from},
    ) as stream:
        wait_until(lambda: stream.last_count() is not None, message="the stream sent no unread count")

    assert [item["id"] for item in feed["items"]] == [ALICE_NOTIFICATION]
    assert count == {"count": 1}
    assert preferences["smsEnabled"] is True  # bob's is off
    assert read_all == {"updated": 1, "unreadCount": 0}
    assert stream.titles() == [ALICE_NOTIFICATION]
    assert bobs_data(backend) == BOB_UNTOUCHED


@pytest.mark.parametrize("caller", [TOKEN, SERVER_KEY_FOR_ALICE])
def test_alices_message_log_holds_only_hers(alice: httpx.Client, caller: str) -> None:
    """Given a message of alice's and one of bob's, then alice's message log, and her log
    filtered for bob, show none of bob's; her own message she reads by its id."""
    headers = {**bearer(SERVER_KEY), "X-User-Id": "alice"} if caller == SERVER_KEY_FOR_ALICE else {}

    log = alice.get("/api/messages", headers=headers).json()
    asked_for_bob = alice.get("/api/messages", params={"userId": "bob"}, headers=headers).json()
    her_own = alice.get(f"/api/messages/{ALICE_MESSAGE}", headers=headers)

    assert [item["id"] for item in log["items"]] == [ALICE_MESSAGE]
    assert asked_for_bob == {"items": [], "nextCursor": None}
    assert her_own.status_code == 200 and her_own.json() == {**log["items"][0], "receipts": []}


@pytest.mark.parametrize("acting_for", ["bob", None], ids=["X-User-Id: bob", "no X-User-Id"])
def test_a_server_key_reaches_its_users_or_all_rows(alice: httpx.Client, acting_for: str | None) -> None:
    """Given bob's message, event and contacts, then a server key acting for bob, or for
    nobody in particular, reads them all."""
    headers = {**bearer(SERVER_KEY), **({"X-User-Id": acting_for} if acting_for else {})}

    answers = [
        alice.get(path, headers=headers).status_code
        for path in (f"/api/messages/{BOB_MESSAGE}", f"/api/events/{BOB_EVENT}", "/api/users/bob/contacts")
    ]

    assert answers == [200, 200, 200]
