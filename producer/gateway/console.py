"""``GET /console``: the operator console, a page (plain HTML, CSS and JavaScript, no build
step) over this gateway's own API, signed in with a server key that stays in the browser
tab's session storage and travels only in the ``Authorization`` header: there is no cookie
for another site to ride, so no request forgery to defend against.

Its policy allows its own script and calls to this origin only. Inline styles are allowed
for one reason: a template's email preview is rendered in a sandboxed frame (no script, no
same-origin access) whose document inherits this policy, and email HTML is styled inline.
Images load only from this origin or ``data:``, so a preview fetches nothing from the
internet. Nothing may frame the console.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from producer.gateway.inbox_page import HEADERS, STATIC
from producer.gateway.openapi import Auth, Reply, operation

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _asset(name: str, media_type: str, path: str) -> Route:
    body = (STATIC / name).read_bytes()

    @operation(
        "GET",
        f"The operator console: {name}",
        auth=Auth.PUBLIC,
        replies=[
            Reply(
                200,
                "A static asset of the console (it signs in with a server key).",
                media_type=media_type.split(";")[0],
            )
        ],
    )
    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type, headers={**HEADERS, "Content-Security-Policy": POLICY})

    serve.__name__ = f"console_{name.replace('.', '_')}"
    return Route(path, serve, methods=["GET"])


routes = [
    _asset("console.html", "text/html; charset=utf-8", "/console"),
    _asset("console.js", "text/javascript", "/console.js"),
    _asset("console.css", "text/css", "/console.css"),
]
