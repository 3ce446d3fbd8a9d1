"""Security headers on every gateway response: the defaults everywhere, ``no-store`` on the
API, the inbox page's own policy, HSTS only when configured, and an unbuffered SSE stream."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import SERVER_KEY
from tests.gateway.inbox import user_headers
from tests.gateway.server import LiveServer

EVERYWHERE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/healthz", {}),
        ("/openapi.json", {}),
        ("/api/templates", {"Authorization": f"Bearer {SERVER_KEY}"}),
        ("/api/templates", {}),  # an error answer
        ("/api/notifications", user_headers("alice")),
        ("/no-such-page", {}),
    ],
)
def test_every_response_carries_the_security_headers(
    settings: Settings, path: str, headers: dict[str, str]
) -> None:
    """Given any request, success or error, then the answer carries nosniff, no-referrer, no
    framing, a default-deny content policy, and no Strict-Transport-Security unless asked."""
    with LiveServer(create_app(settings)) as server:
        response = httpx.get(server.url + path, headers=headers, timeout=10)

    for name, value in EVERYWHERE.items():
        assert response.headers[name] == value, name
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers
    if path.startswith("/api/"):
        assert response.headers["cache-control"] == "no-store"


def test_the_inbox_page_keeps_its_strict_policy(settings: Settings) -> None:
    """Then /inbox allows only its own script and style (nothing inline) and no framing."""
    with LiveServer(create_app(settings)) as server:
        response = httpx.get(f"{server.url}/inbox", timeout=10)

    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in response.headers["content-security-policy"].split("; ")
    }
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert response.headers["x-frame-options"] == "DENY"


def test_hsts_is_sent_only_when_configured(make_settings: Callable[..., Settings]) -> None:
    """Given HSTS_MAX_AGE=31536000, then every answer carries Strict-Transport-Security."""
    with LiveServer(create_app(make_settings(HSTS_MAX_AGE="31536000"))) as server:
        response = httpx.get(f"{server.url}/healthz", timeout=10)

    assert response.headers["strict-transport-security"] == "max-age=31536000"


def test_the_notification_stream_is_not_buffered(settings: Settings) -> None:
    """Given an open notification stream, then its first events arrive while it stays open,
    with the security headers on it."""
    with LiveServer(create_app(settings)) as server, httpx.Client(timeout=10) as client:
        url = f"{server.url}/api/notifications/stream"
        with client.stream("GET", url, headers=user_headers("alice")) as response:
            assert response.status_code == 200
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["cache-control"] == "no-store"
            lines = response.iter_lines()
            assert next(lines) == "retry: 1000"
            seen = [next(lines) for _ in range(3)]

    assert "event: unread-count" in seen
