"""CORS from ``CORS_ALLOWED_ORIGINS``: closed by default (no Access-Control-* header at all),
preflight and simple requests answered for an allowed origin, nothing for another."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import SERVER_KEY
from tests.gateway.server import LiveServer

ALLOWED = "https://app.example.test"
OTHER = "https://evil.example.test"

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
}


def _access_control(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_cors_is_closed_by_default(settings: Settings) -> None:
    """Given no CORS_ALLOWED_ORIGINS, then neither a preflight nor a request from a browser
    origin gets any Access-Control-* header."""
    assert settings.cors_allowed_origins == ()
    with LiveServer(create_app(settings)) as server:
        preflight = httpx.options(
            f"{server.url}/api/messages/email", headers={"Origin": ALLOWED, **PREFLIGHT}, timeout=10
        )
        simple = httpx.get(f"{server.url}/healthz", headers={"Origin": ALLOWED}, timeout=10)

    assert _access_control(preflight) == {}
    assert _access_control(simple) == {}
    assert preflight.json()["error"]["code"] == "method_not_allowed"


def test_an_allowed_origin_passes_the_preflight(make_settings: Callable[..., Settings]) -> None:
    """Given CORS_ALLOWED_ORIGINS naming the app's origin, when the browser sends a preflight
    for a POST with Authorization and Idempotency-Key, then it is allowed for that origin
    only, and the real request's answer names the origin and exposes Retry-After."""
    settings = make_settings(CORS_ALLOWED_ORIGINS=f"{ALLOWED}, https://admin.example.test")
    with LiveServer(create_app(settings)) as server:
        preflight = httpx.options(
            f"{server.url}/api/messages/email", headers={"Origin": ALLOWED, **PREFLIGHT}, timeout=10
        )
        actual = httpx.get(
            f"{server.url}/api/templates",
            headers={"Origin": ALLOWED, "Authorization": f"Bearer {SERVER_KEY}"},
            timeout=10,
        )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed_headers = preflight.headers["access-control-allow-headers"].lower()
    for name in ("authorization", "content-type", "idempotency-key", "x-user-id", "last-event-id"):
        assert name in allowed_headers
    assert "access-control-allow-credentials" not in preflight.headers
    assert preflight.headers["x-content-type-options"] == "nosniff"

    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == ALLOWED
    assert "retry-after" in actual.headers["access-control-expose-headers"].lower()


def test_another_origin_is_not_allowed(make_settings: Callable[..., Settings]) -> None:
    """Given an allowed origin configured, when another origin asks, then its preflight is
    refused and no answer names it."""
    settings = make_settings(CORS_ALLOWED_ORIGINS=ALLOWED)
    with LiveServer(create_app(settings)) as server:
        preflight = httpx.options(
            f"{server.url}/api/messages/email", headers={"Origin": OTHER, **PREFLIGHT}, timeout=10
        )
        simple = httpx.get(f"{server.url}/healthz", headers={"Origin": OTHER}, timeout=10)

    assert preflight.status_code == 400
    assert preflight.headers.get("access-control-allow-origin") != OTHER
    assert "access-control-allow-origin" not in simple.headers


def test_a_patch_passes_the_preflight(make_settings: Callable[..., Settings]) -> None:
    """Given an allowed origin, then a browser may PATCH (the partial update beside every PUT)."""
    settings = make_settings(CORS_ALLOWED_ORIGINS=ALLOWED)
    patch = {**PREFLIGHT, "Access-Control-Request-Method": "PATCH"}
    with LiveServer(create_app(settings)) as server:
        preflight = httpx.options(
            f"{server.url}/api/rules/r1", headers={"Origin": ALLOWED, **patch}, timeout=10
        )

    assert preflight.status_code == 200, preflight.text
    assert "PATCH" in preflight.headers["access-control-allow-methods"]
