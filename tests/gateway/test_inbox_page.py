"""``GET /inbox`` in a real headless Chromium: the page lists the user's notifications, shows
the unread badge, marks read on click, and shows a notification sent through the API without
a reload."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from producer.gateway.app import create_app
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import SERVER_KEY, Fleet
from tests.gateway.browser import UI_TIMEOUT_MS, chromium
from tests.gateway.inbox import seed, user_token
from tests.gateway.server import LiveServer


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def test_the_inbox_page_updates_live_and_marks_read(
    settings: Settings, fleet: Callable[..., Fleet], page: Page
) -> None:
    """Given Alice's inbox page open with one unread notification, when a notification is sent
    to her through the API, then it appears at the top without a reload and the badge goes
    from 1 to 2; when she clicks it, it is marked read and the badge goes back to 1."""
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

        items.first.click()
        expect(badge).to_have_text("1", timeout=UI_TIMEOUT_MS)
        expect(items.first).to_have_class("read", timeout=UI_TIMEOUT_MS)
        expect(page.locator("#list")).not_to_contain_text("not for alice")
    assert refused == []


def test_the_page_without_a_token_says_how_to_open_it(settings: Settings, page: Page) -> None:
    """Given no token in the fragment, then the page explains how to open it and calls nothing."""
    with LiveServer(create_app(settings)) as server:
        response = page.goto(f"{server.url}/inbox")
        assert response is not None and response.status == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        expect(page.locator("#status")).to_contain_text("#token=")
