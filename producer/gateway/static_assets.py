"""Serving the gateway's pages and their scripts and styles from ``static/``: read once at
start, answered with the headers every page shares and the policy of the page they belong to."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from producer.gateway.openapi import Auth, Reply, operation
from producer.service import NotificationService
from shared.config import Settings

STATIC = resources.files("producer.gateway") / "static"

HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def asset(
    name: str,
    media_type: str,
    path: str,
    *,
    prefix: str,
    summary: str,
    what: str,
    policy: Callable[[Settings], str] | None,
) -> Route:
    """``GET path`` answering ``static/name``; with ``policy``, the content security policy it
    names for the settings in force (None: a script other sites' pages run, which keeps the
    gateway's default policy, never being a document)."""
    body = (STATIC / name).read_bytes()

    @operation(
        "GET", summary, auth=Auth.PUBLIC, replies=[Reply(200, what, media_type=media_type.split(";")[0])]
    )
    async def serve(request: Request) -> Response:
        if policy is None:
            return Response(body, media_type=media_type, headers=HEADERS)
        service: NotificationService = request.app.state.service
        headers = {**HEADERS, "Content-Security-Policy": policy(service.settings)}
        return Response(body, media_type=media_type, headers=headers)

    serve.__name__ = f"{prefix}_{name.replace('.', '_').replace('-', '_')}"  # the operation's id
    return Route(path, serve, methods=["GET"])
