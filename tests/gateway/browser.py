"""A headless Chromium for page tests: the Debian package's browser driven by Playwright,
which never downloads one here, kept off the network beyond loopback; a second web server
standing for the product that embeds the inbox; and the axe-core accessibility audit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

#: The Debian package's browser.
CHROMIUM = Path("/usr/bin/chromium")

#: Flags that keep a headless Chromium quiet and off the network beyond loopback.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: How long a page may take to show a change, in milliseconds.
UI_TIMEOUT_MS = 15_000


@contextmanager
def chromium() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "install the Debian chromium package (.ci/run does)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def keep_on_loopback(context: BrowserContext) -> list[str]:
    """Refuse every request of ``context`` that would leave this machine; the list returned
    fills with their URLs (a test asserts it stays empty)."""
    refused: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(("http:", "https:", "ws:", "wss:")) and not is_loopback(url):
            refused.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    return refused


class HostSite:
    """A product's own web server on another loopback port (so another origin than the
    gateway's), serving fixed HTML pages by path: where the inbox widget or a frame of the
    inbox page is embedded."""

    def __init__(self, pages: dict[str, str], *, port: int = 0) -> None:
        self.pages = pages
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.origin = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, name="host-site", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(urlsplit(self.path).path)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # a quiet test run; failures show in the browser's view

        return Handler

    def __enter__(self) -> HostSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


#: axe-core, installed by ``make install`` (``npm ci``, pinned by package-lock.json).
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

#: The impacts an audit fails on (axe's "minor" and "moderate" are reported, not failed).
BLOCKING_IMPACTS = ("serious", "critical")


def load_axe(context: BrowserContext) -> None:
    """Give every page of ``context`` axe-core, before its own scripts: as an init script it is
    not subject to the page's content security policy, which refuses inline and foreign code."""
    if not AXE.exists():
        pytest.fail("axe-core is not installed: run `make install` (it installs it with npm)")
    context.add_init_script(path=str(AXE))


def axe_violations(page: Page) -> list[str]:
    """Audit ``page`` with axe-core (shadow roots included; see :func:`load_axe`) and describe
    each violation of a blocking impact: rule, impact and the elements it found."""
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]
