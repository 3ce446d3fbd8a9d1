"""Security headers on every gateway response, as a pure ASGI middleware.

Only the ``http.response.start`` message is touched, so streamed bodies (the notification
stream's Server-Sent Events) pass through unbuffered. A response that sets one of these
headers itself keeps its own value: the inbox page sends the content security policy that
lets its script run. A response whose own policy lets some origins frame it gets no
``X-Frame-Options: DENY``, which would refuse them all: browsers that know ``frame-ancestors``
ignore ``X-Frame-Options`` anyway, and there is no value that names allowed framers.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Sent on every response unless the response set its own.
DEFAULTS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The API serves data, never documents: nothing loads from it and nothing frames it.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}

#: API answers carry per-user data and must never sit in a shared or browser cache.
API_PREFIX = "/api/"
API_CACHE_CONTROL = "no-store"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts_max_age_seconds: int = 0) -> None:
        self.app = app
        self.defaults = dict(DEFAULTS)
        if hsts_max_age_seconds > 0:
            # Only when configured: behind a TLS-terminating proxy we cannot tell HTTPS use.
            self.defaults["Strict-Transport-Security"] = f"max-age={hsts_max_age_seconds}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = str(scope.get("path", "")).startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                framed = _allows_framing(headers.get("Content-Security-Policy", ""))
                for name, value in self.defaults.items():
                    if not (framed and name == "X-Frame-Options"):
                        headers.setdefault(name, value)
                if is_api:
                    headers["Cache-Control"] = API_CACHE_CONTROL
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _allows_framing(policy: str) -> bool:
    """Whether a content security policy names origins that may frame the response."""
    for directive in policy.split(";"):
        name, _, sources = directive.strip().partition(" ")
        if name.lower() == "frame-ancestors":
            return sources.split() not in ([], ["'none'"])
    return False
