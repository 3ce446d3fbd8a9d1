"""``GET /docs`` in a real headless Chromium: Swagger UI renders the gateway's own
``/openapi.json`` from assets the gateway serves itself, under a content security policy
with no inline script, and nothing the page does leaves loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import SERVER_KEY
from tests.gateway.browser import UI_TIMEOUT_MS, keep_on_loopback
from tests.gateway.server import LiveServer

#: The first bytes of every PNG file (https://www.w3.org/TR/png/#5PNG-file-signature).
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gateway(settings: Settings) -> Iterator[str]:
    with LiveServer(create_app(settings)) as server:
        yield server.url


def test_the_docs_list_every_endpoint_and_call_the_gateway(
    browser: Browser, gateway: str, tmp_path: Path
) -> None:
    """Given /docs open, then it lists the endpoints of /openapi.json; authorized with a
    server key, "Try it out" on GET /api/messages answers 200. No request left loopback and
    the page's policy refused nothing."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    off_loopback = keep_on_loopback(context)
    page = context.new_page()
    complaints: list[str] = []
    page.on("console", lambda m: complaints.append(m.text) if m.type in ("error", "warning") else None)
    try:
        response = page.goto(f"{gateway}/docs")
        assert response is not None and response.status == 200
        for path in ("/api/messages/email", "/api/webhooks/configurations", "/api/messages"):
            expect(page.get_by_text(path, exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
        screenshot = tmp_path / "docs.png"
        page.screenshot(path=str(screenshot))

        authorize(page, SERVER_KEY)
        listed = try_it_out(page, "#operations-messages-get_list_messages")
    finally:
        context.close()

    assert screenshot.read_bytes().startswith(PNG_SIGNATURE) and screenshot.stat().st_size > 10_000
    assert listed == "200"
    assert off_loopback == []
    assert complaints == []


def authorize(page: Page, server_key: str) -> None:
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    server_scheme = dialog.locator(".auth-container", has_text="serverKey")
    server_scheme.locator("input").fill(server_key)
    server_scheme.locator("button.authorize").click()
    expect(server_scheme.get_by_role("button", name="Remove authorization")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    server_scheme.get_by_role("button", name="Close").click()


def try_it_out(page: Page, operation: str) -> str:
    """Execute the operation with its defaults; the status code Swagger UI shows."""
    block = page.locator(operation)
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    block.get_by_role("button", name="Execute").click()
    status = block.locator(".live-responses-table tr.response .response-col_status").first
    expect(status).to_be_visible(timeout=UI_TIMEOUT_MS)
    return status.inner_text().strip()


def test_the_docs_assets_come_from_the_gateway_under_a_strict_policy(gateway: str) -> None:
    """Then the page, its script and Swagger UI's assets are served by the gateway, each with
    a policy that allows scripts and styles from this origin only (nothing inline)."""
    page = httpx.get(f"{gateway}/docs", timeout=10)
    assets = {
        path: httpx.get(f"{gateway}/docs/{path}", timeout=10)
        for path in ("docs.js", "swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")
    }

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text and 'src="docs/docs.js"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert {path: answer.status_code for path, answer in assets.items()} == dict.fromkeys(assets, 200)
    assert "SwaggerUIBundle" in assets["swagger-ui-bundle.js"].text
    assert "validatorUrl: null" in assets["docs.js"].text
