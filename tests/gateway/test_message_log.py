"""``GET /api/messages``: the message log, newest first, filtered, paged by cursor, on
PostgreSQL and on SQLite; refused filters answer 422 naming the parameter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer.gateway.app import create_app
from producer.gateway.pagination import encode_cursor
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY
from tests.gateway.credentials import bearer
from tests.gateway.databases import BACKENDS, on_backend
from tests.gateway.server import LiveServer

#: When the oldest seeded message was created; each next one a minute later.
START = datetime.fromisoformat("2026-03-01T12:00:00+00:00")


@dataclass(frozen=True)
class Seeded:
    id: str
    channel: str
    status: str
    user_id: str | None
    event_type: str | None = None
    template_key: str | None = None


#: Oldest first; the log lists them the other way round.
MESSAGES = [
    Seeded("m0", "email", "sent", "alice", "order.placed", "receipt"),
    Seeded("m1", "sms", "failed", "bob", "order.placed"),
    Seeded("m2", "in_app", "queued", "alice", None, "welcome"),
    Seeded("m3", "webhook", "delivered", None, "invoice.paid"),
    Seeded("m4", "email", "failed", "bob", None, "receipt"),
    Seeded("m5", "email", "queued", "alice", "invoice.paid"),
]
NEWEST_FIRST = [m.id for m in reversed(MESSAGES)]


def created_at(index: int) -> datetime:
    return START + timedelta(minutes=index)


def seed(settings: Settings, messages: list[Seeded], *, same_time: bool = False, first: int = 0) -> None:
    """Store ``messages``, created a minute apart from minute ``first`` (or all at START)."""
    with system_scope(settings.database_url) as session:
        for i, m in enumerate(messages, start=first):
            at = START if same_time else created_at(i)
            session.add(
                NotificationLog(
                    id=m.id,
                    channel=m.channel,
                    status=m.status,
                    recipient=f"{m.id}@example.com",
                    user_id=m.user_id,
                    event_type=m.event_type,
                    template_key=m.template_key,
                    payload={"to": f"{m.id}@example.com"},
                    max_attempts=3,
                    created_at=at,
                    updated_at=at,
                )
            )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    return on_backend(request.param, settings, tmp_path)


@pytest.fixture
def client(backend: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(backend)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.headers.update(bearer(SERVER_KEY))
        yield c


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def walk(client: httpx.Client, **params: Any) -> list[list[str]]:
    """Every page of the log, following ``nextCursor`` to the end."""
    pages, cursor = [], None
    while True:
        answer = client.get("/api/messages", params={**params, **({"cursor": cursor} if cursor else {})})
        pages.append(ids(answer))
        cursor = answer.json()["nextCursor"]
        if cursor is None:
            return pages


def test_the_log_lists_every_message_newest_first(backend: Settings, client: httpx.Client) -> None:
    """Given six messages, when the log is read with a server key, then it lists all six,
    newest first, each as GET /api/messages/{id} shows it, with no next page."""
    seed(backend, MESSAGES)

    answer = client.get("/api/messages")

    assert ids(answer) == NEWEST_FIRST
    assert answer.json()["nextCursor"] is None
    first = answer.json()["items"][0]
    # One message's status adds its receipts, which the log's pages leave out.
    assert {**first, "receipts": []} == client.get(f"/api/messages/{first['id']}").json()
    assert first["templateKey"] is None and first["eventType"] == "invoice.paid"


@pytest.mark.parametrize("same_time", [False, True], ids=["a minute apart", "in the same microsecond"])
def test_pages_follow_the_cursor_without_gaps_or_repeats(
    backend: Settings, client: httpx.Client, same_time: bool
) -> None:
    """Given six messages (also when all were created at the same instant, where only the id
    orders them), when the log is read two at a time, then the pages hold every message
    once, in the order of the whole log, and the last page has no cursor."""
    seed(backend, MESSAGES, same_time=same_time)
    whole = ids(client.get("/api/messages"))

    pages = walk(client, limit=2)

    assert pages == [whole[0:2], whole[2:4], whole[4:6]]
    assert sorted(whole) == sorted(NEWEST_FIRST)


def test_a_message_created_after_the_first_page_does_not_shift_the_next(
    backend: Settings, client: httpx.Client
) -> None:
    """Given a first page read, when a newer message arrives, then the next page goes on
    from where the first stopped."""
    seed(backend, MESSAGES)
    first = client.get("/api/messages", params={"limit": 3}).json()
    seed(backend, [Seeded("newer", "email", "queued", "alice")], first=len(MESSAGES))

    second = client.get("/api/messages", params={"limit": 3, "cursor": first["nextCursor"]})

    assert ids(second) == NEWEST_FIRST[3:]


def cursor_of(created_at: str, message_id: str) -> str:
    """A cursor as the log makes them (opaque to clients; built here to vary its time)."""
    return encode_cursor([created_at, message_id])


def test_a_cursor_names_an_instant_whatever_its_offset(backend: Settings, client: httpx.Client) -> None:
    """Given a cursor whose time carries another UTC offset for the same instant, then the
    page is the one the UTC cursor gives; a time the offset pushes past year 9999 is 422."""
    seed(backend, MESSAGES)
    utc = cursor_of(created_at(3).isoformat(), "m3")
    shifted = cursor_of(created_at(3).astimezone(timezone(timedelta(hours=-5))).isoformat(), "m3")
    overflowing = cursor_of("9999-12-31T23:59:59-23:59", "m3")

    assert ids(client.get("/api/messages", params={"cursor": utc})) == ["m2", "m1", "m0"]
    assert ids(client.get("/api/messages", params={"cursor": shifted})) == ["m2", "m1", "m0"]
    refused = client.get("/api/messages", params={"cursor": overflowing})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "cursor"


#: Each filter, the value given, and the messages it keeps (newest first).
FILTERED = [
    ({"status": "failed"}, ["m4", "m1"]),
    ({"channel": "email"}, ["m5", "m4", "m0"]),
    ({"channel": "in-app"}, ["m2"]),
    ({"channel": "in_app"}, ["m2"]),
    ({"userId": "bob"}, ["m4", "m1"]),
    ({"eventType": "order.placed"}, ["m1", "m0"]),
    ({"templateKey": "receipt"}, ["m4", "m0"]),
    ({"createdFrom": created_at(2).isoformat()}, ["m5", "m4", "m3", "m2"]),
    ({"createdTo": created_at(2).isoformat()}, ["m1", "m0"]),
    ({"createdFrom": "2026-03-01T13:01:00+01:00", "createdTo": "2026-03-01T12:03:00Z"}, ["m2", "m1"]),
    ({"status": "failed", "channel": "email", "userId": "bob"}, ["m4"]),
    ({"userId": "nobody"}, []),
]


@pytest.mark.parametrize(("params", "expected"), FILTERED, ids=[str(p) for p, _ in FILTERED])
def test_filters_keep_only_matching_messages(
    backend: Settings, client: httpx.Client, params: dict[str, str], expected: list[str]
) -> None:
    """Given six messages, when the log is filtered, then it holds exactly the matching ones,
    newest first; a filtered log pages like the whole one."""
    seed(backend, MESSAGES)

    assert ids(client.get("/api/messages", params=params)) == expected
    assert [i for page in walk(client, **params, limit=1) for i in page] == expected


#: Query strings the log refuses, and the parameter each refusal names.
REFUSED = [
    ("status=lost", "status"),
    ("channel=fax", "channel"),
    ("userId=", "userId"),
    ("eventType=" + "x" * 256, "eventType"),
    ("templateKey=a%00b", "templateKey"),
    ("createdFrom=yesterday", "createdFrom"),
    ("createdFrom=2026-03-01", "createdFrom"),
    ("createdFrom=2026-03-01T12:00:00", "createdFrom"),
    ("createdTo=2026-02-30T12:00:00Z", "createdTo"),
    ("createdTo=9999-12-31T23:59:59-23:59", "createdTo"),
    ("createdFrom=2026-03-02T00:00:00Z&createdTo=2026-03-01T00:00:00Z", "createdFrom"),
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("limit=ten", "limit"),
    ("cursor=not-a-cursor", "cursor"),
    ("stauts=failed", "stauts"),
    ("status=failed&status=sent", "status"),
]


@pytest.mark.parametrize(("query", "field"), REFUSED, ids=[q for q, _ in REFUSED])
def test_bad_filters_answer_422_naming_the_parameter(
    backend: Settings, client: httpx.Client, query: str, field: str
) -> None:
    """Given a malformed, unknown or repeated parameter, then the answer is 422 in the error
    shape, naming it, rather than a log filtered by less than was asked."""
    seed(backend, MESSAGES)

    answer = client.get(f"/api/messages?{query}")

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]


def test_the_limit_defaults_to_50_and_goes_up_to_200(backend: Settings, client: httpx.Client) -> None:
    """Given 201 messages, then a page holds 50 unless asked for more, and at most 200."""
    seed(backend, [Seeded(f"n{i:03}", "email", "sent", None) for i in range(201)])

    assert len(ids(client.get("/api/messages"))) == 50
    most = client.get("/api/messages", params={"limit": 200}).json()
    assert len(most["items"]) == 200 and most["nextCursor"] is not None
