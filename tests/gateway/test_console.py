"""``GET /console``: the operator console in a real headless Chromium against a real gateway
and worker fleet (RabbitMQ, PostgreSQL): every area walked as an operator would, each
audited with axe-core, and photographed in the light and dark themes.

``make screenshots`` runs this module with ``KAI_SCREENSHOTS`` naming the folder the README
shows (docs/screenshots); otherwise the pictures go to a temporary folder, still taken, so a
page that cannot be drawn fails here too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from producer.gateway.app import create_app
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import SERVER_KEY, WEBHOOK_SECRET, Fleet
from tests.gateway.browser import (
    UI_TIMEOUT_MS,
    HostSite,
    axe_violations,
    keep_on_loopback,
    load_axe,
)
from tests.gateway.inbox import user_token
from tests.gateway.server import LiveServer, free_port
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until
from workers.analytics import fold

SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}
VIEWPORT = {"width": 1280, "height": 860}


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT)
    load_axe(context)
    yield context
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("KAI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Console:
    """The console in one tab: going to an area, auditing it, photographing it."""

    def __init__(self, page: Page, url: str, shots: Path) -> None:
        self.page = page
        self.url = url
        self.shots = shots
        self.violations: dict[str, list[str]] = {}

    def go(self, area: str, heading: str) -> None:
        self.page.goto(f"{self.url}/console#{area}")
        expect(self.page.locator("#area-title")).to_have_text(heading, timeout=UI_TIMEOUT_MS)

    def audit(self, name: str) -> None:
        found = axe_violations(self.page)
        if found:
            self.violations[name] = found

    def photograph(self, name: str) -> None:
        theme = self.page.locator("html").get_attribute("data-theme")
        self.page.screenshot(path=str(self.shots / f"console-{name}-{theme}.png"), full_page=True)


def api(server: LiveServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=SERVER, timeout=20, **kwargs)  # type: ignore[arg-type]


def status_of(server: LiveServer, message_id: str) -> str:
    return str(api(server, "GET", f"/api/messages/{message_id}").json()["status"])


def test_an_operator_walks_every_area_of_the_console(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], context: BrowserContext, shots: Path
) -> None:
    """Signed in with the server key, the operator finds messages and a message's story,
    replays a dead letter and sees it delivered, tests an endpoint and rotates its secret
    (shown once, and it signs), writes a template watching the preview change as they type
    (an error shown at its part and line), saves versions and restores one, writes a rule,
    looks a user up, watches the fleet and the analytics charts; every area passes axe-core
    and is photographed in both themes."""
    refused = keep_on_loopback(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    settings = make_settings()
    fleet(settings, [Channel.WEBHOOK, Channel.IN_APP])
    with WebhookReceiver(WEBHOOK_SECRET) as receiver, LiveServer(create_app(settings)) as server:
        console = Console(page, server.url, shots)
        # What there is to look at: a delivered in-app notification, a webhook that ran out of
        # retries, and an endpoint.
        sent = api(
            server,
            "POST",
            "/api/messages/in-app",
            json={"userId": "alice", "title": "Welcome", "message": "Hi"},
        )
        receiver.respond_next(503, times=3)
        doomed = api(
            server, "POST", "/api/messages/webhook", json={"url": receiver.url, "payload": {"order": 7}}
        )
        doomed_id = doomed.json()["id"]
        endpoint = api(
            server,
            "POST",
            "/api/webhooks/configurations",
            json={"url": receiver.url, "description": "Billing"},
        ).json()
        wait_until(lambda: status_of(server, doomed_id) == "failed", timeout=20, message="webhook not failed")

        page.goto(server.url + "/console")
        page.get_by_label("Server API key").fill(SERVER_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#area-title")).to_have_text("Messages", timeout=UI_TIMEOUT_MS)
        assert page.evaluate("document.cookie") == ""

        # Messages: the log, then one message's story.
        expect(page.locator("tbody tr")).to_have_count(2, timeout=UI_TIMEOUT_MS)
        console.audit("messages")
        console.photograph("messages")
        page.get_by_label("Channel", exact=True).select_option("in_app")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("tbody tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
        page.locator("tbody a").first.click()
        expect(page.locator("#area-title")).to_have_text(
            f"Message {sent.json()['id']}", timeout=UI_TIMEOUT_MS
        )
        expect(page.get_by_text("Payload", exact=True)).to_be_visible()
        console.audit("message")

        # Dead letters: the failed webhook, replayed once its receiver is back.
        console.go("dead-letters/webhook", "Dead letters")
        row = page.locator("tbody tr", has_text=doomed_id)
        expect(row).to_have_count(1, timeout=UI_TIMEOUT_MS)
        expect(row).to_contain_text("503")
        console.audit("dead-letters")
        console.photograph("dead-letters")
        row.get_by_role("button", name=f"Replay {doomed_id}").click()
        expect(page.locator("tbody tr", has_text=doomed_id)).to_have_count(0, timeout=UI_TIMEOUT_MS)
        wait_until(
            lambda: status_of(server, doomed_id) == "delivered", timeout=20, message="replay not delivered"
        )

        # Endpoints: health, a test event, a rotated secret that signs the next one.
        console.go("endpoints", "Webhook endpoints")
        page.get_by_role("link", name=receiver.url).click()
        expect(page.locator("#area-title")).to_have_text("Endpoint", timeout=UI_TIMEOUT_MS)
        page.get_by_role("button", name="Send test event").click()
        expect(page.locator("figure.chart").first).to_be_visible(timeout=UI_TIMEOUT_MS)
        page.get_by_role("button", name="Rotate secret").click()
        secret = page.locator("#new-secret")
        expect(secret).to_contain_text("whsec_", timeout=UI_TIMEOUT_MS)
        new_secret = secret.inner_text()
        assert new_secret != endpoint["secret"]
        console.audit("endpoint")
        console.photograph("endpoints")
        receiver.set_secret(new_secret)  # the receiver now verifies with the new secret only
        before = len(receiver.deliveries)
        tested = api(server, "POST", f"/api/webhooks/configurations/{endpoint['id']}/test")
        assert tested.status_code in (200, 202), tested.text
        wait_until(lambda: len(receiver.deliveries) > before, timeout=20, message="test event not received")

        # Templates: the preview follows the typing; an error shows at its part and line.
        console.go("templates/", "New template")
        page.get_by_label("Key", exact=True).fill("code")
        page.get_by_label("Channel", exact=True).select_option("sms")
        page.get_by_label("Sample data (JSON)").fill('{"name": "Ann"}')
        part = page.get_by_label("sms", exact=True)
        part.fill("Hello {{name}}")
        preview = page.locator(".sms")
        expect(preview).to_have_text("Hello Ann", timeout=UI_TIMEOUT_MS)
        part.press_sequentially(", your code is ready")
        expect(preview).to_have_text("Hello Ann, your code is ready", timeout=UI_TIMEOUT_MS)
        expect(page.locator("#sms-segments")).to_contain_text("1 segment (GSM-7)")
        part.fill("Hello {{#if name}}")
        expect(page.locator("#error-sms")).to_contain_text("line 1", timeout=UI_TIMEOUT_MS)
        part.fill("Hello {{name}}")
        expect(page.locator("#error-sms")).to_have_text("", timeout=UI_TIMEOUT_MS)
        page.get_by_role("button", name="Create").click()
        expect(page.locator("#area-title")).to_have_text("Template code", timeout=UI_TIMEOUT_MS)
        page.get_by_label("sms", exact=True).fill("Hi {{name}}")
        page.get_by_role("button", name="Save as the next version").click()
        expect(page.get_by_role("button", name="Restore v1")).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(page.locator(".diff ins")).to_have_text("Hi")
        console.audit("template")
        console.photograph("templates")
        page.get_by_role("button", name="Restore v1").click()
        expect(page.get_by_text("v3 (current)")).to_be_visible(timeout=UI_TIMEOUT_MS)
        current = api(server, "GET", "/api/templates/code").json()["items"][0]
        assert (current["version"], current["sms"]) == (3, "Hello {{name}}")

        # Rules: one written as JSON.
        api(
            server,
            "POST",
            "/api/templates",
            json={"key": "order-shipped", "channel": "in_app", "title": "Shipped", "message": "On its way"},
        )
        console.go("rules/", "New rule")
        page.get_by_role("button", name="Create").click()
        expect(page.locator("#area-title")).to_have_text("Rule", timeout=UI_TIMEOUT_MS)
        [rule] = api(server, "GET", "/api/rules").json()["items"]
        assert (rule["eventType"], rule["templateKey"]) == ("order.shipped", "order-shipped")
        console.go("rules", "Event rules")
        expect(page.get_by_role("link", name="Order shipped")).to_be_visible(timeout=UI_TIMEOUT_MS)
        console.audit("rules")
        console.photograph("rules")

        # Users: Alice's preferences, contacts and inbox.
        console.go("users/alice", "Users")
        expect(page.get_by_role("cell", name="Welcome")).to_be_visible(timeout=UI_TIMEOUT_MS)
        console.audit("users")
        console.photograph("users")

        # Fleet: the queues with their consumers.
        console.go("fleet", "Fleet")
        webhook_row = page.locator("tbody tr", has=page.get_by_role("rowheader", name="webhook"))
        expect(webhook_row).to_have_count(1, timeout=UI_TIMEOUT_MS)
        assert int(webhook_row.locator("td").nth(1).inner_text()) >= 1
        console.audit("fleet")
        console.photograph("fleet")

        # Analytics: charts of what was sent, once the folder has counted it, and an experiment.
        promo = {
            "key": "promo",
            "channel": "email",
            "subject": "Sale",
            "text": "Hi {{name}}",
            "sampleData": {"name": "A"},
        }
        assert api(server, "POST", "/api/templates", json=promo).status_code == 201
        experiment = {
            "name": "Urgency",
            "template": "promo",
            "channel": "email",
            "metric": "opened",
            "variants": [
                {"name": "control", "weight": 50},
                {"name": "last-day", "weight": 50, "subject": "Last day"},
            ],
        }
        assert api(server, "POST", "/api/experiments", json=experiment).status_code == 201
        while fold(settings):
            pass
        console.go("analytics", "Analytics")
        expect(page.get_by_text("Messages sent, per day, last 30 days")).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(page.get_by_role("rowheader", name="last-day")).to_be_visible(timeout=UI_TIMEOUT_MS)
        console.audit("analytics")
        console.photograph("analytics")

        # The dark theme, everywhere.
        page.get_by_role("button", name="Dark theme").click()
        assert page.locator("html").get_attribute("data-theme") == "dark"
        for area, heading, ready in (
            ("messages", "Messages", "tbody tr"),
            ("dead-letters/webhook", "Dead letters", "text=dead-lettered webhook messages"),
            (f"endpoints/{endpoint['id']}", "Endpoint", "figure.chart"),
            ("templates/code/sms/en", "Template code", ".sms"),
            ("rules", "Event rules", "tbody tr"),
            ("users/alice", "Users", "tbody tr"),
            ("fleet", "Fleet", "tbody tr"),
            ("analytics", "Analytics", "figure.chart"),
        ):
            console.go(area, heading)
            expect(page.locator(ready).first).to_be_visible(timeout=UI_TIMEOUT_MS)
            console.audit(f"{area} (dark)")
            console.photograph(area.split("/")[0])

    assert console.violations == {}
    assert errors == []
    assert refused == []


def test_the_console_asks_again_for_a_refused_key(settings: Settings, context: BrowserContext) -> None:
    page = context.new_page()
    with LiveServer(create_app(settings)) as server:
        page.goto(server.url + "/console#fleet")
        page.get_by_label("Server API key").fill("not-a-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#signin-error")).to_contain_text("not a server key", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_role("navigation")).to_be_hidden()
        assert axe_violations(page) == []


def test_the_widget_is_photographed_in_both_themes(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], context: BrowserContext, shots: Path
) -> None:
    """The inbox widget on a product's page of another origin, its feed open, light and dark."""
    port = free_port()
    page_html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme</title>'
        f'<script src="http://127.0.0.1:{port}/inbox/widget.js"></script></head>'
        '<body style="margin:0;font-family:system-ui,sans-serif;background:{bg};color:{fg}">'
        '<main style="padding:1rem 1rem 30rem 20rem"><h1>Acme</h1>'
        '<kai-inbox theme="{theme}"></kai-inbox></main></body></html>'
    )
    colours = {"light": ("#f5f6f8", "#1c2230"), "dark": ("#12151b", "#e6e9ef")}
    site = HostSite(
        {
            f"/{theme}": page_html.replace("{theme}", theme).replace("{bg}", bg).replace("{fg}", fg)
            for theme, (bg, fg) in colours.items()
        }
    )
    settings = make_settings(CORS_ALLOWED_ORIGINS=site.origin)
    fleet(settings, [Channel.IN_APP])
    with LiveServer(create_app(settings), port=port) as server, site:
        for title in ("Your invoice is ready", "Password changed", "Weekly report"):
            answer = httpx.post(
                f"{server.url}/api/messages/in-app",
                json={"userId": "alice", "title": title, "message": "Open it to see more."},
                headers=SERVER,
            )
            assert answer.status_code == 202
        page = context.new_page()
        for theme in ("light", "dark"):
            page.goto(f"{site.url}/{theme}")
            page.evaluate("t => { document.querySelector('kai-inbox').token = t; }", user_token("alice"))
            expect(page.locator("kai-inbox .badge")).to_have_text("3", timeout=UI_TIMEOUT_MS)
            page.locator("kai-inbox .bell").click()
            expect(page.locator("kai-inbox li")).to_have_count(3, timeout=UI_TIMEOUT_MS)
            page.screenshot(
                path=str(shots / f"widget-{theme}.png"), clip={"x": 0, "y": 0, "width": 720, "height": 560}
            )
