"""``GET /inbox``: a small inbox page (plain HTML, CSS and JavaScript, no build step).

The page takes the user token from its URL fragment (``/inbox#token=…``), which browsers
never send to the server, calls ``/api/notifications`` with it, and follows the notification
stream. The strict content security policy allows only the page's own script and calls to
this origin: no inline script or style, no framing.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from producer.gateway.openapi import Auth, Reply, operation

STATIC = resources.files("producer.gateway") / "static"

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _asset(name: str, media_type: str) -> Route:
    body = (STATIC / name).read_bytes()

    @operation(
        "GET",
        f"The inbox page: {name}",
        auth=Auth.PUBLIC,
        replies=[Reply(200, "A static asset of the inbox page.", media_type=media_type.split(";")[0])],
    )
    async def serve(_request: Request) -> Response:
        return Response(body, media_type=media_type, headers=HEADERS)

    serve.__name__ = f"inbox_{name.replace('.', '_')}"
    return Route(f"/{name}" if name != "inbox.html" else "/inbox", serve, methods=["GET"])


routes = [
    _asset("inbox.html", "text/html; charset=utf-8"),
    _asset("inbox.js", "text/javascript"),
    _asset("inbox.css", "text/css"),
]
