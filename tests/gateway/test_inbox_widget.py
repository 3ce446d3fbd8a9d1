"""``GET /inbox/widget.js``: the ``<kai-inbox>`` element on a product's page of another origin,
in a real headless Chromium against a real gateway: the unread badge, live delivery, marking
read and unread, mark all, delete, load more, empty and error states, the keyboard, action
links resolved against ``base-url``, themes, and an axe-core audit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from producer.gateway.app import create_app
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import SERVER_KEY, USER_TOKEN_SECRET, Fleet
from tests.gateway.browser import (
    UI_TIMEOUT_MS,
    HostSite,
    axe_violations,
    keep_on_loopback,
    load_axe,
)
from tests.gateway.inbox import seed, user_token
from tests.gateway.server import LiveServer, free_port
from tests.readme import example_after
from tests.waiting import wait_until

SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}

#: The product's page: the gateway's script and the element, nothing else of ours. The
#: product's own script hands the element its token (a property: never in the markup).
HOST_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Acme</title>
<script src="{gateway}/inbox/widget.js"></script></head>
<body><main><h1>Acme</h1>
<kai-inbox base-url="{base}" {attributes}></kai-inbox>
</main></body>
</html>
"""


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    yield context
    context.close()


def host_site(gateway: str, attributes: str = "") -> HostSite:
    """The product, on a port of its own. Its application's address (``base-url``) names the
    host as ``localhost``, unlike the page's own address, so a link resolved against the page
    instead would show."""
    port = free_port()
    page = HOST_PAGE.format(gateway=gateway, base=app_url(port), attributes=attributes)
    return HostSite({"/": page, "/billing/invoices/7": "<!doctype html><title>Invoice 7</title>"}, port=port)


def app_url(port: int) -> str:
    return f"http://localhost:{port}/billing/"


def sign_in(page: Page, site: HostSite, user_id: str, token: str | None = None) -> None:
    """Open the product's page and hand the element a token, as the product's script does."""
    page.goto(site.url + "/")
    page.evaluate(
        "token => { document.querySelector('kai-inbox').token = token; }", token or user_token(user_id)
    )


def readme_token(user_id: str) -> str:
    """A token minted by the README's example, as the product's backend would."""
    namespace: dict[str, Any] = {}
    exec(example_after("Your backend mints a short-lived user token"), namespace)
    return str(namespace["inbox_token"](user_id, USER_TOKEN_SECRET))


def send(server: LiveServer, user_id: str, title: str, **fields: str) -> str:
    sent = httpx.post(
        f"{server.url}/api/messages/in-app",
        json={"userId": user_id, "title": title, "message": "hello", **fields},
        headers=SERVER,
    )
    assert sent.status_code == 202, sent.text
    return str(sent.json()["id"])


def receipts(server: LiveServer, message_id: str) -> list[str]:
    status = httpx.get(f"{server.url}/api/messages/{message_id}", headers=SERVER).json()
    return [r["type"] for r in status["receipts"]]


def wait_for_receipts(server: LiveServer, message_id: str, expected: list[str]) -> None:
    wait_until(
        lambda: receipts(server, message_id) == expected,
        timeout=UI_TIMEOUT_MS / 1000,
        message=lambda: f"receipts {receipts(server, message_id)}, expected {expected}",
    )


def test_the_widget_on_another_origin_counts_updates_live_and_marks_read(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], context: BrowserContext
) -> None:
    """Given a product's page on another origin, allowed by CORS_ALLOWED_ORIGINS, with the
    widget signed in with a token minted as the README shows, and Alice's two unread
    notifications, then the bell says 2 unread; when one is sent
    to her, it arrives without a reload and is announced, and the badge says 3; opening the
    feed records it seen, "Mark read" brings the badge back to 2, Escape closes the feed and
    gives the focus back to the bell; its relative action link points into the product, and
    following it records the click before the product's page opens."""
    refused = keep_on_loopback(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    port = free_port()
    site = host_site(f"http://127.0.0.1:{port}")
    settings = make_settings(CORS_ALLOWED_ORIGINS=site.origin)
    fleet(settings, [Channel.IN_APP])
    seed(settings, "alice", 2, prefix="earlier ")
    with LiveServer(create_app(settings), port=port) as server, site:
        sign_in(page, site, "alice", readme_token("alice"))
        bell = page.locator("kai-inbox .bell")
        badge = page.locator("kai-inbox .badge")
        expect(bell).to_have_attribute("aria-label", "Notifications, 2 unread", timeout=UI_TIMEOUT_MS)
        expect(badge).to_have_text("2")
        expect(bell).to_have_attribute("data-state", "live", timeout=UI_TIMEOUT_MS)

        sent = send(server, "alice", "Invoice ready", actionUrl="/billing/invoices/7")
        expect(badge).to_have_text("3", timeout=UI_TIMEOUT_MS)
        expect(page.locator("kai-inbox [role=status]")).to_have_text("New notification: Invoice ready")
        assert receipts(server, sent) == []  # not seen while the feed is closed

        bell.click()
        expect(bell).to_have_attribute("aria-expanded", "true")
        panel = page.locator("kai-inbox [role=dialog]")
        expect(panel).to_be_visible()
        items = panel.locator("li")
        expect(items).to_have_count(3)
        first = items.first
        expect(first.locator(".title")).to_have_text("Invoice ready")
        expect(first.locator("time")).to_have_text("now")
        invoice = f"{app_url(site.server.server_address[1])}invoices/7"
        expect(first.locator("a.title")).to_have_attribute("href", invoice)
        wait_for_receipts(server, sent, ["seen"])

        first.get_by_role("button", name="Mark read: Invoice ready").click()
        expect(badge).to_have_text("2", timeout=UI_TIMEOUT_MS)
        expect(first).to_have_class("read")
        wait_for_receipts(server, sent, ["seen", "read"])

        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        expect(bell).to_have_attribute("aria-expanded", "false")
        expect(bell).to_be_focused()

        bell.press("Enter")
        expect(panel).to_be_visible()
        first.locator("a.title").click()
        page.wait_for_url(invoice, timeout=UI_TIMEOUT_MS)
        wait_for_receipts(server, sent, ["seen", "read", "clicked"])
    assert refused == []
    assert errors == []


def test_the_feed_pages_marks_all_read_deletes_and_marks_unread(
    make_settings: Callable[..., Settings], context: BrowserContext
) -> None:
    """Given 21 unread notifications, when Alice opens the feed, then it shows 20 and "Load
    more" the 21st; "Mark all read" clears the badge; "Mark unread" brings one back; deleting
    it takes it off the feed and the focus stays in the feed; with everything deleted the feed
    says so."""
    page = context.new_page()
    port = free_port()
    site = host_site(f"http://127.0.0.1:{port}")
    settings = make_settings(CORS_ALLOWED_ORIGINS=site.origin)
    seed(settings, "alice", 21)
    with LiveServer(create_app(settings), port=port), site:
        sign_in(page, site, "alice")
        bell = page.locator("kai-inbox .bell")
        badge = page.locator("kai-inbox .badge")
        expect(badge).to_have_text("21", timeout=UI_TIMEOUT_MS)
        bell.click()
        items = page.locator("kai-inbox li")
        expect(items).to_have_count(20)
        page.locator("kai-inbox .more").click()
        expect(items).to_have_count(21, timeout=UI_TIMEOUT_MS)
        expect(page.locator("kai-inbox .more")).to_be_hidden()
        expect(items.last.locator(".title")).to_have_text("n0")

        page.get_by_role("button", name="Mark all read").click()
        expect(badge).to_be_hidden(timeout=UI_TIMEOUT_MS)
        expect(bell).to_have_attribute("aria-label", "Notifications, none unread")
        expect(page.locator("kai-inbox li.unread")).to_have_count(0)

        page.get_by_role("button", name="Mark unread: n20").click()
        expect(badge).to_have_text("1", timeout=UI_TIMEOUT_MS)
        expect(items.first).to_have_class("unread")

        page.get_by_role("button", name="Delete: n20").click()
        expect(items).to_have_count(20, timeout=UI_TIMEOUT_MS)
        expect(badge).to_be_hidden()
        expect(page.get_by_role("button", name="Mark unread: n19")).to_be_focused()

        ids = [li.get_attribute("data-id") for li in items.all()]
        deleted = httpx.post(
            f"http://127.0.0.1:{port}/api/notifications/delete",
            json={"ids": ids},
            headers={"Authorization": f"Bearer {user_token('alice')}"},
        )
        assert deleted.json()["deleted"] == 20
        page.reload()
        page.evaluate("token => { document.querySelector('kai-inbox').token = token; }", user_token("alice"))
        bell.click()
        expect(page.locator("kai-inbox [role=dialog]")).to_contain_text("You're all caught up.")
        expect(items).to_have_count(0)


def test_a_refused_token_shows_an_error_and_no_count(
    make_settings: Callable[..., Settings], context: BrowserContext
) -> None:
    """Given a token the gateway refuses, then the feed shows an alert saying so and the bell
    no count, and the element tells the product once ("tokenexpired"); when the product
    answers with a fresh token, the feed starts again. Given no token at all, the feed asks
    the user to sign in."""
    page = context.new_page()
    port = free_port()
    site = host_site(f"http://127.0.0.1:{port}")
    settings = make_settings(CORS_ALLOWED_ORIGINS=site.origin)
    seed(settings, "alice", 2)
    with LiveServer(create_app(settings), port=port), site:
        page.goto(site.url + "/")
        page.evaluate(
            "() => { window.expired = 0; document.querySelector('kai-inbox')"
            ".addEventListener('tokenexpired', () => { window.expired += 1; }); }"
        )
        bell = page.locator("kai-inbox .bell")
        bell.click()
        expect(page.locator("kai-inbox [role=alert]")).to_contain_text("Sign in")

        page.evaluate("() => { document.querySelector('kai-inbox').token = 'not-a-token'; }")
        expect(page.locator("kai-inbox [role=alert]")).to_contain_text("expired", timeout=UI_TIMEOUT_MS)
        expect(page.locator("kai-inbox .badge")).to_be_hidden()
        assert page.evaluate("window.expired") == 1

        # The product mints a fresh token when told, as its script would.
        page.evaluate(
            "fresh => { const inbox = document.querySelector('kai-inbox');"
            " inbox.addEventListener('tokenexpired', () => { inbox.token = fresh; }, { once: true });"
            " inbox.token = 'expired-too'; }",
            user_token("alice"),
        )
        expect(page.locator("kai-inbox .badge")).to_have_text("2", timeout=UI_TIMEOUT_MS)
        expect(page.locator("kai-inbox [role=alert]")).to_be_hidden()
        assert page.evaluate("window.expired") == 2


def test_an_origin_the_gateway_does_not_allow_gets_nothing(
    settings: Settings, context: BrowserContext
) -> None:
    """Given a gateway whose CORS_ALLOWED_ORIGINS does not name the product's origin, then the
    browser keeps the answers from the widget, and the feed says the inbox cannot be reached."""
    seed(settings, "alice", 1)
    page = context.new_page()
    port = free_port()
    site = host_site(f"http://127.0.0.1:{port}")
    with LiveServer(create_app(settings), port=port), site:
        sign_in(page, site, "alice")
        page.locator("kai-inbox .bell").click()
        expect(page.locator("kai-inbox [role=alert]")).to_contain_text(
            "could not be reached", timeout=UI_TIMEOUT_MS
        )
        expect(page.locator("kai-inbox li")).to_have_count(0)


@pytest.mark.parametrize(
    ("attributes", "background"),
    [
        ('theme="light"', "rgb(255, 255, 255)"),
        ('theme="dark"', "rgb(27, 31, 39)"),
        ('theme="dark" style="--kai-inbox-bg: rgb(1, 2, 3)"', "rgb(1, 2, 3)"),
    ],
    ids=["light", "dark", "custom property"],
)
def test_the_widget_is_themable_and_passes_an_accessibility_audit(
    make_settings: Callable[..., Settings], context: BrowserContext, attributes: str, background: str
) -> None:
    """Given the widget open with read and unread notifications in a theme, then its colours
    are the theme's (or the custom properties'), and axe-core finds no serious or critical
    violation in the product's page."""
    load_axe(context)
    page = context.new_page()
    port = free_port()
    site = host_site(f"http://127.0.0.1:{port}", attributes)
    settings = make_settings(CORS_ALLOWED_ORIGINS=site.origin)
    ids = seed(settings, "alice", 3)
    with LiveServer(create_app(settings), port=port) as server, site:
        httpx.post(
            f"{server.url}/api/notifications/mark-as-read",
            json={"ids": ids[:1]},
            headers={"Authorization": f"Bearer {user_token('alice')}"},
        )
        sign_in(page, site, "alice")
        expect(page.locator("kai-inbox .badge")).to_have_text("2", timeout=UI_TIMEOUT_MS)
        page.locator("kai-inbox .bell").click()
        panel = page.locator("kai-inbox [role=dialog]")
        expect(panel.locator("li")).to_have_count(3)
        expect(panel).to_have_css("background-color", background)

        assert axe_violations(page) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_widget_follows_the_readers_colour_scheme(
    make_settings: Callable[..., Settings], browser: Browser, scheme: Literal["light", "dark"]
) -> None:
    """Given no theme attribute, then the widget follows prefers-color-scheme."""
    context = browser.new_context(color_scheme=scheme)
    page = context.new_page()
    port = free_port()
    site = host_site(f"http://127.0.0.1:{port}")
    settings = make_settings(CORS_ALLOWED_ORIGINS=site.origin)
    try:
        with LiveServer(create_app(settings), port=port), site:
            sign_in(page, site, "alice")
            page.locator("kai-inbox .bell").click()
            expected = "rgb(27, 31, 39)" if scheme == "dark" else "rgb(255, 255, 255)"
            expect(page.locator("kai-inbox [role=dialog]")).to_have_css("background-color", expected)
    finally:
        context.close()
