"""Security headers on every gateway response: the defaults everywhere, ``no-store`` on the
API, the inbox page's own policy (framed only by INBOX_FRAME_ANCESTORS), HSTS only when
configured, and an unbuffered SSE stream."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from producer.gateway.app import create_app
from shared.config import ConfigError, Settings
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


def test_frame_ancestors_open_the_inbox_page_to_those_origins_only(
    make_settings: Callable[..., Settings],
) -> None:
    """Given INBOX_FRAME_ANCESTORS naming two origins, then /inbox may be framed by exactly
    those (no X-Frame-Options: DENY, which would refuse them too), and every other answer,
    the widget's script included, still refuses every frame."""
    origins = "https://app.example.test, http://127.0.0.1:8080/"
    with LiveServer(create_app(make_settings(INBOX_FRAME_ANCESTORS=origins))) as server:
        page = httpx.get(f"{server.url}/inbox", timeout=10)
        others = [
            httpx.get(f"{server.url}{path}", timeout=10)
            for path in ("/healthz", "/api/notifications", "/inbox/widget.js")
        ]

    policy = page.headers["content-security-policy"]
    assert policy.endswith("frame-ancestors https://app.example.test http://127.0.0.1:8080")
    assert "script-src 'self'" in policy
    assert "x-frame-options" not in page.headers
    for other in others:
        assert other.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in other.headers["content-security-policy"]


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "https://app.example.test; script-src *",
        "'self'",
        "ftp://files.example.test",
        "https://a.test/path",
    ],
)
def test_frame_ancestors_must_be_plain_origins(value: str) -> None:
    """Given INBOX_FRAME_ANCESTORS with anything but http(s) origins (a wildcard, a keyword,
    a second directive, a path), then the settings refuse to load, naming the variable."""
    with pytest.raises(ConfigError, match="INBOX_FRAME_ANCESTORS"):
        Settings.from_env({"INBOX_FRAME_ANCESTORS": value})


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
