"""``/api/notifications``: the caller's feed, unread count, mark seen, mark-as-read,
mark-as-unread, clicked, delete and test notification, over real HTTP against the real
database, and that no user ever reaches another user's notifications."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from producer.gateway.app import create_app
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import Notification, utcnow
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Fleet
from tests.gateway.inbox import seed, user_headers
from tests.gateway.server import LiveServer
from tests.waiting import wait_until


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def as_user(user_id: str) -> dict[str, str]:
    return user_headers(user_id)


def feed(client: httpx.Client, user_id: str, **params: Any) -> dict[str, Any]:
    response = client.get("/api/notifications", params=params, headers=as_user(user_id))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def unread(client: httpx.Client, user_id: str) -> int:
    response = client.get("/api/notifications/unread-count", headers=as_user(user_id))
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


def post(client: httpx.Client, user_id: str, action: str, body: Any = None) -> httpx.Response:
    return client.post(f"/api/notifications/{action}", json=body or {}, headers=as_user(user_id))


def test_feed_is_newest_first_and_pages_through_everything_once(
    settings: Settings, client: httpx.Client
) -> None:
    """Given 45 notifications, when the feed is read 20 at a time with its cursor, then every
    notification appears exactly once, newest first, and the last page has no cursor."""
    ids = seed(settings, "alice", 45)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = feed(client, "alice", limit=20, **({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(reversed(ids))


def test_feed_items_have_the_documented_shape(settings: Settings, client: httpx.Client) -> None:
    """Given one notification, then its feed item carries exactly the documented fields."""
    seed(settings, "alice", 1, type="warning")

    (item,) = feed(client, "alice")["items"]

    assert set(item) == {
        "id",
        "title",
        "message",
        "type",
        "actionUrl",
        "createdAt",
        "readAt",
        "seenAt",
        "data",
    }
    assert (item["title"], item["type"], item["readAt"], item["seenAt"], item["data"]) == (
        "n0",
        "warning",
        None,
        None,
        {"i": 0},
    )


def test_feed_filters_by_read_state_type_and_time(settings: Settings, client: httpx.Client) -> None:
    """Given read and unread notifications of several types and ages, then each filter returns
    only the matching ones."""
    old = seed(settings, "alice", 2, type="error", start=utcnow() - timedelta(days=3), prefix="old")
    recent = seed(settings, "alice", 3, type="info", prefix="new")
    post(client, "alice", "mark-as-read", {"ids": [recent[0], old[0]]})

    def titles(**params: Any) -> set[str]:
        return {item["title"] for item in feed(client, "alice", **params)["items"]}

    assert titles(status="unread") == {"old1", "new1", "new2"}
    assert titles(status="read") == {"old0", "new0"}
    assert titles(type="error") == {"old0", "old1"}
    since = (utcnow() - timedelta(days=1)).isoformat()
    assert titles(since=since) == {"new0", "new1", "new2"}
    assert titles(status="unread", type="info", since=since) == {"new1", "new2"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "201"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "archived"}, "status"),
        ({"type": "shouting"}, "type"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_feed_refuses_bad_parameters(client: httpx.Client, params: dict[str, str], field: str) -> None:
    """Given a bad query parameter, then the feed answers 422 naming it."""
    response = client.get("/api/notifications", params=params, headers=as_user("alice"))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field


def test_unread_count_follows_reads_and_deletes(settings: Settings, client: httpx.Client) -> None:
    """Given five unread notifications, when two are read and one deleted, then two remain."""
    ids = seed(settings, "alice", 5)
    assert unread(client, "alice") == 5

    read = post(client, "alice", "mark-as-read", {"ids": ids[:2]})
    deleted = post(client, "alice", "delete", {"ids": [ids[2]]})

    assert read.json() == {"updated": 2, "unreadCount": 3}
    assert deleted.json() == {"deleted": 1, "unreadCount": 2}
    assert unread(client, "alice") == 2


def test_mark_as_read_ignores_unknown_ids_and_twice_is_harmless(
    settings: Settings, client: httpx.Client
) -> None:
    """Given a notification, when it is marked read twice along with an unknown id, then the
    first call updates one row, the second none, and both succeed."""
    (ident,) = seed(settings, "alice", 1)

    first = post(client, "alice", "mark-as-read", {"ids": [ident, "no-such-id"]})
    second = post(client, "alice", "mark-as-read", {"ids": [ident]})

    assert first.json() == {"updated": 1, "unreadCount": 0}
    assert second.json() == {"updated": 0, "unreadCount": 0}
    assert feed(client, "alice")["items"][0]["readAt"] is not None


def test_mark_as_unread_undoes_a_read_and_keeps_the_receipts_state(
    settings: Settings, client: httpx.Client
) -> None:
    """Given two read notifications, when one is marked unread (along with an unknown id),
    then one row changes, the count is 1, its ``readAt`` is gone and its
    ``seenAt`` stays; marking it unread again changes nothing."""
    ids = seed(settings, "alice", 2)
    post(client, "alice", "mark-as-read", {"ids": ids})

    first = post(client, "alice", "mark-as-unread", {"ids": [ids[0], "no-such-id"]})
    second = post(client, "alice", "mark-as-unread", {"ids": [ids[0]]})

    assert first.json() == {"updated": 1, "unreadCount": 1}
    assert second.json() == {"updated": 0, "unreadCount": 1}
    items = {item["id"]: item for item in feed(client, "alice")["items"]}
    assert items[ids[0]]["readAt"] is None and items[ids[0]]["seenAt"] is not None
    assert items[ids[1]]["readAt"] is not None


def seen_at(client: httpx.Client, user_id: str) -> dict[str, str | None]:
    return {item["id"]: item["seenAt"] for item in feed(client, user_id, limit=100)["items"]}


def test_seen_is_kept_once_and_changes_no_count(settings: Settings, client: httpx.Client) -> None:
    """Given three unread notifications, when two are marked seen twice along with an unknown
    id, then the first call sees two, the second none and keeps their first ``seenAt``; they
    stay unread."""
    ids = seed(settings, "alice", 3)

    first = post(client, "alice", "seen", {"ids": [*ids[:2], "no-such-id"]})
    before = seen_at(client, "alice")
    second = post(client, "alice", "seen", {"ids": ids[:2]})

    assert (first.status_code, first.json()) == (200, {"updated": 2})
    assert second.json() == {"updated": 0}
    assert seen_at(client, "alice") == before
    assert before[ids[0]] is not None and before[ids[1]] is not None and before[ids[2]] is None
    assert unread(client, "alice") == 3


def test_reading_and_clicking_imply_seen(settings: Settings, client: httpx.Client) -> None:
    """Given four unseen notifications, when one is read, one clicked and then all read, then
    each is seen; a notification seen before keeps its first ``seenAt``."""
    ids = seed(settings, "alice", 4)
    post(client, "alice", "seen", {"ids": [ids[3]]})
    first_seen = seen_at(client, "alice")[ids[3]]

    post(client, "alice", "mark-as-read", {"ids": [ids[0]]})
    clicked = post(client, "alice", "clicked", {"ids": [ids[1], "no-such-id"]})
    after_one, unread_after_one = seen_at(client, "alice"), unread(client, "alice")
    post(client, "alice", "mark-all-as-read")

    assert clicked.json() == {"clicked": 1}
    assert after_one[ids[0]] is not None and after_one[ids[1]] is not None and after_one[ids[2]] is None
    assert unread_after_one == 3  # a click is not a read
    assert all(seen_at(client, "alice").values())
    assert seen_at(client, "alice")[ids[3]] == first_seen


def test_mark_all_as_read_is_idempotent(settings: Settings, client: httpx.Client) -> None:
    """Given three unread notifications, when all are marked read twice, then the second call
    changes nothing and the count stays zero."""
    seed(settings, "alice", 3)

    first = post(client, "alice", "mark-all-as-read")
    second = post(client, "alice", "mark-all-as-read")

    assert (first.status_code, first.json()) == (200, {"updated": 3, "unreadCount": 0})
    assert (second.status_code, second.json()) == (200, {"updated": 0, "unreadCount": 0})


def test_delete_is_soft_and_idempotent(settings: Settings, client: httpx.Client) -> None:
    """Given two notifications, when one is deleted twice, then it leaves the feed, its row
    is kept with deleted_at set, and the second delete changes nothing."""
    ids = seed(settings, "alice", 2)

    first = post(client, "alice", "delete", {"ids": [ids[0]]})
    second = post(client, "alice", "delete", {"ids": [ids[0]]})

    assert first.json()["deleted"] == 1 and second.json()["deleted"] == 0
    assert [i["id"] for i in feed(client, "alice")["items"]] == [ids[1]]
    with system_scope(settings.database_url) as session:
        row = session.get(Notification, ids[0])
        assert row is not None and row.deleted_at is not None


@pytest.mark.parametrize(
    "body",
    [{}, {"ids": "abc"}, {"ids": [1, 2]}, {"ids": [""]}, {"ids": ["x" * 65]}, {"ids": ["a"] * 1001}],
)
@pytest.mark.parametrize("action", ["seen", "clicked", "mark-as-read", "mark-as-unread", "delete"])
def test_id_lists_are_validated(client: httpx.Client, action: str, body: dict[str, Any]) -> None:
    """Given a malformed id list, then the call answers 422 and names ``ids``."""
    response = post(client, "alice", action, body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "ids"


def test_no_user_reaches_another_users_notifications(settings: Settings, client: httpx.Client) -> None:
    """Given Alice's and Bob's notifications, when Alice lists, counts, marks and deletes
    using Bob's ids, then she sees only her own and Bob's stay unread and undeleted."""
    alice_ids = seed(settings, "alice", 2, prefix="alice")
    bob_ids = seed(settings, "bob", 3, prefix="bob")

    listed = {i["id"] for i in feed(client, "alice", limit=100)["items"]}
    seen = post(client, "alice", "seen", {"ids": bob_ids})
    clicked = post(client, "alice", "clicked", {"ids": bob_ids})
    marked = post(client, "alice", "mark-as-read", {"ids": bob_ids})
    unmarked = post(client, "alice", "mark-as-unread", {"ids": bob_ids})
    deleted = post(client, "alice", "delete", {"ids": bob_ids})
    post(client, "alice", "mark-all-as-read")
    server_view = client.get(
        "/api/notifications", headers={"Authorization": f"Bearer {SERVER_KEY}", "X-User-Id": "bob"}
    ).json()
    # A user token's subject wins over an X-User-Id header naming someone else.
    spoofed = client.get("/api/notifications", headers={**as_user("alice"), "X-User-Id": "bob"}).json()

    assert listed == set(alice_ids)
    assert (seen.json(), clicked.json()) == ({"updated": 0}, {"clicked": 0})
    assert marked.json() == {"updated": 0, "unreadCount": 2}
    assert unmarked.json() == {"updated": 0, "unreadCount": 2}
    assert deleted.json() == {"deleted": 0, "unreadCount": 2}
    assert unread(client, "bob") == 3
    assert {i["id"] for i in server_view["items"]} == set(bob_ids)
    assert {i["id"] for i in spoofed["items"]} == set(alice_ids)
    with system_scope(settings.database_url) as session:
        rows = session.scalars(select(Notification).where(Notification.user_id == "bob")).all()
        assert all(r.read_at is None and r.seen_at is None and r.deleted_at is None for r in rows)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/notifications"),
        ("GET", "/api/notifications/unread-count"),
        ("POST", "/api/notifications/seen"),
        ("POST", "/api/notifications/clicked"),
        ("POST", "/api/notifications/mark-as-read"),
        ("POST", "/api/notifications/mark-as-unread"),
        ("POST", "/api/notifications/mark-all-as-read"),
        ("POST", "/api/notifications/delete"),
        ("POST", "/api/notifications/test"),
    ],
)
def test_every_endpoint_needs_a_user(client: httpx.Client, method: str, path: str) -> None:
    """Given no credential, then 401; given a server key without X-User-Id, then 400."""
    anonymous = client.request(method, path, json={"ids": []})
    unnamed = client.request(
        method, path, json={"ids": []}, headers={"Authorization": f"Bearer {SERVER_KEY}"}
    )

    assert anonymous.status_code == 401
    assert (unnamed.status_code, unnamed.json()["error"]["code"]) == (400, "user_required")


def test_test_notification_reaches_the_callers_inbox(
    settings: Settings, client: httpx.Client, fleet: Callable[..., Fleet]
) -> None:
    """Given the in-app workers, when a user asks for a test notification, then it is enqueued
    (202 with the message id) and lands in that user's feed only."""
    fleet(settings, [Channel.IN_APP])

    response = post(client, "alice", "test")

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    message_id = response.json()["id"]
    wait_until(lambda: unread(client, "alice") == 1, message="test notification never arrived")
    with system_scope(settings.database_url) as session:
        row = session.scalars(
            select(Notification).where(Notification.notification_log_id == message_id)
        ).one()
        assert row.user_id == "alice"
    assert unread(client, "bob") == 0
