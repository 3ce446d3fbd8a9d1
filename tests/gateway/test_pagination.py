"""Every list the gateway answers has one shape, ``{"items": [...], "nextCursor": ...}``, and
its cursor pages through every row exactly once, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer.gateway.app import create_app
from producer.gateway.pagination import DEFAULT_LIMIT, MAX_LIMIT, encode_cursor
from shared.config import Settings
from shared.db.models import NotificationRule, WebhookConfiguration, utcnow
from shared.db.session import session_scope
from tests.conftest import SERVER_KEY
from tests.gateway.databases import BACKENDS, on_backend
from tests.gateway.server import LiveServer

WEBHOOKS = "/api/webhooks/configurations"


@pytest.fixture(params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[tuple[httpx.Client, str]]:
    """A live gateway with a server key, on each kind of database the service runs on."""
    backend = on_backend(request.param, settings, tmp_path)
    with (
        LiveServer(create_app(backend)) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {SERVER_KEY}"}, timeout=30) as c,
    ):
        yield c, backend.database_url


def every_page(
    client: httpx.Client, path: str, limit: int, cursor: str | None = None
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "nextCursor"}
        pages.append(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


def insert_rules(url: str, count: int) -> list[str]:
    """``count`` rules created at the same instant: only the id tells them apart."""
    now = utcnow()
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with session_scope(url) as session:
        for n, rule_id in enumerate(ids):
            session.add(
                NotificationRule(
                    id=rule_id,
                    name=f"rule {n}",
                    event_type="order.created",
                    channels=["email"],
                    template_key="t",
                    conditions=[],
                    created_at=now,
                    updated_at=now,
                )
            )
    return sorted(ids)


def insert_endpoints(url: str, count: int) -> list[str]:
    now = utcnow()
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with session_scope(url) as session:
        for endpoint_id in ids:
            session.add(
                WebhookConfiguration(
                    id=endpoint_id, url="https://example.com/hook", secret="s", created_at=now, updated_at=now
                )
            )
    return sorted(ids)


def test_rules_with_the_same_creation_time_page_once_each(gateway: tuple[httpx.Client, str]) -> None:
    """Given 7 rules created at the same instant, when listed 3 at a time, then each appears
    exactly once, in id order, over three pages."""
    client, url = gateway
    ids = insert_rules(url, 7)

    pages = every_page(client, "/api/rules", limit=3)

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [r["id"] for p in pages for r in p] == ids


def test_endpoints_with_the_same_creation_time_page_once_each(gateway: tuple[httpx.Client, str]) -> None:
    client, url = gateway
    ids = insert_endpoints(url, 5)

    pages = every_page(client, WEBHOOKS, limit=2)

    assert [e["id"] for p in pages for e in p] == ids
    assert all("secret" not in e for p in pages for e in p)


def test_templates_page_by_key_channel_and_locale(gateway: tuple[httpx.Client, str]) -> None:
    """Given templates in several channels and locales, then the list and one key's versions
    page through each current version once, by key, channel and locale, and a new version
    saved between two pages is not shown twice."""
    client, _ = gateway
    for key in ("b", "a"):
        for locale in ("fr", "en", "de"):
            saved = client.post(
                "/api/templates",
                json={"key": key, "channel": "sms", "locale": locale, "sms": f"{key} {locale}"},
            )
            assert saved.status_code == 201, saved.text
    client.post("/api/templates", json={"key": "a", "channel": "email", "subject": "s", "text": "t"})

    first = client.get("/api/templates", params={"limit": 2}).json()
    edited = client.put(
        "/api/templates/a", json={"key": "a", "channel": "email", "subject": "s2", "text": "t"}
    )
    assert edited.status_code == 200, edited.text
    rest = every_page(client, "/api/templates", limit=2, cursor=first["nextCursor"])
    listed = [(t["key"], t["channel"], t["locale"]) for t in first["items"] + [t for p in rest for t in p]]
    versions = [
        (t["channel"], t["locale"]) for p in every_page(client, "/api/templates/a", limit=1) for t in p
    ]

    assert listed == [
        ("a", "email", "en"),
        ("a", "sms", "de"),
        ("a", "sms", "en"),
        ("a", "sms", "fr"),
        ("b", "sms", "de"),
        ("b", "sms", "en"),
        ("b", "sms", "fr"),
    ]
    assert versions == [("email", "en"), ("sms", "de"), ("sms", "en"), ("sms", "fr")]


def test_a_list_without_limit_answers_the_default_page(gateway: tuple[httpx.Client, str]) -> None:
    client, url = gateway
    insert_rules(url, DEFAULT_LIMIT + 1)

    first = client.get("/api/rules").json()
    last = client.get("/api/rules", params={"cursor": first["nextCursor"]}).json()

    assert (len(first["items"]), len(last["items"]), last["nextCursor"]) == (DEFAULT_LIMIT, 1, None)


def test_an_empty_list_has_no_next_page(gateway: tuple[httpx.Client, str]) -> None:
    client, _ = gateway
    for path in ("/api/rules", "/api/templates", WEBHOOKS):
        assert client.get(path).json() == {"items": [], "nextCursor": None}


LISTS = ("/api/rules", "/api/templates", WEBHOOKS, "/api/notifications")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_LIMIT + 1)}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "WzEsMiwzLDQsNV0"}, "cursor"),  # a well-formed array of the wrong shape
        ({"cursor": "x" * 2000}, "cursor"),
    ],
)
def test_bad_paging_parameters_answer_422_naming_them(
    gateway: tuple[httpx.Client, str], path: str, params: dict[str, str], field: str
) -> None:
    client, _ = gateway
    response = client.get(path, params=params, headers={"X-User-Id": "u1"})

    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def test_a_cursor_of_one_list_is_refused_by_another(gateway: tuple[httpx.Client, str]) -> None:
    client, url = gateway
    insert_rules(url, 2)
    rules_cursor = client.get("/api/rules", params={"limit": 1}).json()["nextCursor"]

    response = client.get("/api/templates", params={"cursor": rules_cursor})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "cursor"


def test_a_cursor_whose_offset_leaves_the_calendar_answers_422(gateway: tuple[httpx.Client, str]) -> None:
    """A forged rules cursor at 9999-12-31T23:00-05:00 is past year 9999 in UTC: refused, not a 500."""
    client, _ = gateway
    forged = encode_cursor(["9999-12-31T23:00:00-05:00", "00000000-0000-0000-0000-000000000000"])

    response = client.get("/api/rules", params={"cursor": forged})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "cursor"
