"""A headless Chromium for page tests: the Debian package's browser driven by Playwright,
which never downloads one here, kept off the network beyond loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Route, sync_playwright

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
