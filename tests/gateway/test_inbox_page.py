"""``GET /inbox`` in a real headless Chromium: the page lists the user's notifications, shows
the unread badge, marks what it shows seen and what is clicked read, records a followed action
before navigating to it, and shows a notification sent through the API without a reload. It
takes its token out of the address bar, loads in frames of the INBOX_FRAME_ANCESTORS origins
only, resolves relative action links against the ``base`` its embedder gives, and passes an
axe-core audit."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from producer.gateway.app import create_app
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import SERVER_KEY, Fleet
from tests.gateway.browser import UI_TIMEOUT_MS, HostSite, axe_violations, load_axe
from tests.gateway.inbox import seed, user_headers, user_token
from tests.gateway.server import LiveServer, free_port
from tests.waiting import wait_until

SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def receipts(server: LiveServer, message_id: str) -> list[str]:
    status = httpx.get(f"{server.url}/api/messages/{message_id}", headers=SERVER).json()
    return [r["type"] for r in status["receipts"]]


def unread(server: LiveServer, user_id: str) -> int:
    answer = httpx.get(f"{server.url}/api/notifications/unread-count", headers=user_headers(user_id))
    return int(answer.json()["count"])


def wait_for_receipts(server: LiveServer, message_id: str, expected: list[str]) -> None:
    wait_until(
        lambda: receipts(server, message_id) == expected,
        timeout=UI_TIMEOUT_MS / 1000,
        message=lambda: f"receipts {receipts(server, message_id)}, expected {expected}",
    )


def test_the_inbox_page_updates_live_and_marks_read(
    settings: Settings, fleet: Callable[..., Fleet], page: Page
) -> None:
    """Given Alice's inbox page open with one unread notification, when a notification is sent
    to her through the API, then it appears at the top without a reload, the badge goes from 1
    to 2 and its message is recorded seen; when she clicks it, it is marked read (its message
    gets a ``read`` receipt) and the badge goes back to 1."""
    fleet(settings, [Channel.IN_APP])
    seed(settings, "alice", 1, prefix="earlier ")
    seed(settings, "bob", 1, prefix="not for alice ")
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    with LiveServer(create_app(settings)) as server:
        page.goto(f"{server.url}/inbox#token={user_token('alice')}")
        items = page.locator("#list li")
        badge = page.locator("#badge")
        # The stylesheet loads under the strict policy (the badge is white on red).
        expect(badge).to_have_css("color", "rgb(255, 255, 255)", timeout=UI_TIMEOUT_MS)
        expect(items).to_have_count(1, timeout=UI_TIMEOUT_MS)
        expect(badge).to_have_text("1", timeout=UI_TIMEOUT_MS)
        expect(page.locator("#status")).to_have_text("live", timeout=UI_TIMEOUT_MS)

        sent = httpx.post(
            f"{server.url}/api/messages/in-app",
            json={"userId": "alice", "title": "Fresh from the API", "message": "hello", "type": "success"},
            headers={"Authorization": f"Bearer {SERVER_KEY}"},
        )
        assert sent.status_code == 202, sent.text

        expect(items).to_have_count(2, timeout=UI_TIMEOUT_MS)
        expect(items.first.locator(".title")).to_have_text("Fresh from the API")
        expect(badge).to_have_text("2", timeout=UI_TIMEOUT_MS)
        wait_for_receipts(server, sent.json()["id"], ["seen"])

        items.first.click()
        expect(badge).to_have_text("1", timeout=UI_TIMEOUT_MS)
        expect(items.first).to_have_class("read", timeout=UI_TIMEOUT_MS)
        expect(page.locator("#list")).not_to_contain_text("not for alice")
        wait_for_receipts(server, sent.json()["id"], ["seen", "read"])
    assert refused == []


def test_the_page_marks_each_page_of_its_feed_seen_once(
    settings: Settings, fleet: Callable[..., Fleet], page: Page
) -> None:
    """Given 21 delivered notifications (two pages of 20), when Alice opens her inbox and loads
    the second page, then every message is recorded seen exactly once, in one call per page;
    opening the inbox again records nothing more."""
    fleet(settings, [Channel.IN_APP])
    with LiveServer(create_app(settings)) as server:
        sent = [
            httpx.post(
                f"{server.url}/api/messages/in-app",
                json={"userId": "alice", "title": f"n{n}", "message": "hello"},
                headers=SERVER,
            ).json()["id"]
            for n in range(21)
        ]
        wait_until(lambda: unread(server, "alice") == 21, message="the notifications were not all delivered")
        calls: list[str] = []
        page.on(
            "request", lambda r: calls.append(r.url) if r.url.endswith("/api/notifications/seen") else None
        )

        page.goto(f"{server.url}/inbox#token={user_token('alice')}")
        expect(page.locator("#list li")).to_have_count(20, timeout=UI_TIMEOUT_MS)
        page.locator("#more").click()
        expect(page.locator("#list li")).to_have_count(21, timeout=UI_TIMEOUT_MS)
        expect(page.locator("#list li[data-seen]")).to_have_count(21, timeout=UI_TIMEOUT_MS)
        page.reload()
        expect(page.locator("#list li")).to_have_count(20, timeout=UI_TIMEOUT_MS)
        expect(page.locator("#status")).to_have_text("live", timeout=UI_TIMEOUT_MS)

        for message_id in sent:
            assert receipts(server, message_id) == ["seen"]
    assert len(calls) == 2


def test_following_an_action_records_the_click_before_navigating(
    settings: Settings, fleet: Callable[..., Fleet], page: Page
) -> None:
    """Given a read notification whose action leads elsewhere in the application, when Alice
    clicks it, then the page navigates at once and its message still gets its ``clicked``
    receipt, naming where the action led: the request outlives the page."""
    fleet(settings, [Channel.IN_APP])
    with LiveServer(create_app(settings)) as server:
        sent = httpx.post(
            f"{server.url}/api/messages/in-app",
            json={"userId": "alice", "title": "Invoice ready", "message": "See it", "actionUrl": "/healthz"},
            headers=SERVER,
        ).json()["id"]
        wait_until(
            lambda: (
                httpx.post(
                    f"{server.url}/api/notifications/mark-all-as-read", headers=user_headers("alice")
                ).json()["updated"]
                == 1
            ),
            message="the notification was not delivered",
        )

        page.goto(f"{server.url}/inbox#token={user_token('alice')}")
        item = page.locator("#list li")
        expect(item).to_have_class("read", timeout=UI_TIMEOUT_MS)
        item.click()
        page.wait_for_url(f"{server.url}/healthz", timeout=UI_TIMEOUT_MS)

        wait_for_receipts(server, sent, ["seen", "read", "clicked"])
        status = httpx.get(f"{server.url}/api/messages/{sent}", headers=SERVER).json()
        assert status["receipts"][-1]["detail"] == "/healthz"


def test_the_page_without_a_token_says_how_to_open_it(settings: Settings, page: Page) -> None:
    """Given no token in the fragment, then the page explains how to open it and calls nothing."""
    with LiveServer(create_app(settings)) as server:
        response = page.goto(f"{server.url}/inbox")
        assert response is not None and response.status == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        expect(page.locator("#status")).to_contain_text("#token=")


def test_the_page_takes_the_token_out_of_the_address_bar(settings: Settings, page: Page) -> None:
    """Given the page opened with its token in the fragment, then the address bar and the
    history entry lose the fragment at once, and a reload still shows the inbox."""
    seed(settings, "alice", 1)
    with LiveServer(create_app(settings)) as server:
        page.goto(f"{server.url}/inbox#token={user_token('alice')}")
        expect(page.locator("#list li")).to_have_count(1, timeout=UI_TIMEOUT_MS)
        assert page.url == f"{server.url}/inbox"
        page.reload()
        expect(page.locator("#list li")).to_have_count(1, timeout=UI_TIMEOUT_MS)
        assert "token" not in page.url


#: A page of the product that frames the inbox.
FRAMING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme</title></head>
<body><iframe title="Notifications" src="{src}" width="600" height="400"></iframe></body></html>
"""


def framing_pages(gateway: str, inbox_fragment: str) -> dict[str, str]:
    page = FRAMING_PAGE.format(src=f"{gateway}/inbox#{inbox_fragment}")
    return {"/": page, "/billing/invoices/7": "<!doctype html><title>Invoice 7</title>"}


def test_the_page_loads_in_a_frame_of_an_allowed_origin_only(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], browser: Browser
) -> None:
    """Given INBOX_FRAME_ANCESTORS naming the product's origin, when the product frames the
    inbox page, then it loads there (its answer names the origin in frame-ancestors and has no
    X-Frame-Options), a notification sent then arrives live and reading it drops the badge, and
    its relative action link leads the whole window to the ``base`` the product gave; framed by
    another origin, Chromium refuses to show it."""
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    allowed = HostSite({}, port=free_port())
    fragment = f"token={user_token('alice')}&base={allowed.url}/billing/"
    allowed.pages.update(framing_pages(gateway, fragment))
    other = HostSite(framing_pages(gateway, fragment))
    settings = make_settings(INBOX_FRAME_ANCESTORS=allowed.origin)
    fleet(settings, [Channel.IN_APP])
    context = browser.new_context()
    try:
        with LiveServer(create_app(settings), port=port) as server, allowed, other:
            sent = httpx.post(
                f"{server.url}/api/messages/in-app",
                json={"userId": "alice", "title": "Invoice", "message": "ready", "actionUrl": "invoices/7"},
                headers=SERVER,
            )
            assert sent.status_code == 422  # a relative path without its leading slash is refused
            sent = httpx.post(
                f"{server.url}/api/messages/in-app",
                json={
                    "userId": "alice",
                    "title": "Invoice",
                    "message": "ready",
                    "actionUrl": "/billing/invoices/7",
                },
                headers=SERVER,
            )
            wait_until(lambda: unread(server, "alice") == 1, message="the notification was not delivered")
            answer = httpx.get(f"{server.url}/inbox")
            assert "frame-ancestors " + allowed.origin in answer.headers["content-security-policy"]
            assert "x-frame-options" not in answer.headers

            framed = context.new_page()
            framed.goto(allowed.url + "/")
            inbox = framed.frame_locator("iframe")
            expect(inbox.locator("#list li")).to_have_count(1, timeout=UI_TIMEOUT_MS)
            expect(inbox.locator("#badge")).to_have_text("1")
            # Live in the frame: a second one arrives without a reload; reading it drops the badge.
            receipt = httpx.post(
                f"{server.url}/api/messages/in-app",
                json={"userId": "alice", "title": "Receipt", "message": "paid"},
                headers=SERVER,
            )
            assert receipt.status_code == 202
            expect(inbox.locator("#list li")).to_have_count(2, timeout=UI_TIMEOUT_MS)
            expect(inbox.locator("#badge")).to_have_text("2")
            inbox.locator("#list li", has_text="Receipt").click()
            expect(inbox.locator("#badge")).to_have_text("1", timeout=UI_TIMEOUT_MS)
            inbox.locator("#list li", has_text="Invoice").click()
            framed.wait_for_url(f"{allowed.url}/billing/invoices/7", timeout=UI_TIMEOUT_MS)
            # The click and the read are two requests on their way at once: either lands first.
            wait_until(
                lambda: sorted(receipts(server, sent.json()["id"])) == ["clicked", "read", "seen"],
                timeout=UI_TIMEOUT_MS / 1000,
                message=lambda: f"receipts {receipts(server, sent.json()['id'])}",
            )

            refused = context.new_page()
            with refused.expect_event(
                "console", lambda m: "frame-ancestors" in m.text, timeout=UI_TIMEOUT_MS
            ):
                refused.goto(other.url + "/")
            frame = refused.frames[1]
            assert not frame.url.startswith(gateway)
            assert refused.frame_locator("iframe").locator("#list").count() == 0
    finally:
        context.close()


def test_without_the_setting_the_page_refuses_every_frame(settings: Settings) -> None:
    """Given no INBOX_FRAME_ANCESTORS, then the page may not be framed at all."""
    with LiveServer(create_app(settings)) as server:
        answer = httpx.get(f"{server.url}/inbox")
    assert answer.headers["content-security-policy"].endswith("frame-ancestors 'none'")
    assert answer.headers["x-frame-options"] == "DENY"


def test_the_page_passes_an_accessibility_audit(settings: Settings, browser: Browser) -> None:
    """Given the page showing read and unread notifications, then axe-core finds no serious
    or critical violation (colour contrast included)."""
    ids = seed(settings, "alice", 3, type="warning")
    context = browser.new_context()
    load_axe(context)
    page = context.new_page()
    try:
        with LiveServer(create_app(settings)) as server:
            httpx.post(
                f"{server.url}/api/notifications/mark-as-read",
                json={"ids": ids[:1]},
                headers=user_headers("alice"),
            )
            page.goto(f"{server.url}/inbox#token={user_token('alice')}")
            expect(page.locator("#list li")).to_have_count(3, timeout=UI_TIMEOUT_MS)
            expect(page.locator("#status")).to_have_text("live", timeout=UI_TIMEOUT_MS)
            assert axe_violations(page) == []
    finally:
        context.close()
