"""``GET /inbox``: a small inbox page (plain HTML, CSS and JavaScript, no build step), and
``GET /inbox/widget.js``: the ``<kai-inbox>`` element a product drops into its own pages.

The page takes the user token from its URL fragment (``/inbox#token=…``), which browsers
never send to the server, calls ``/api/notifications`` with it, and follows the notification
stream. The strict content security policy allows only the page's own script and calls to
this origin: no inline script or style. Only the origins of ``INBOX_FRAME_ANCESTORS`` may
frame it (none by default).

The widget runs in the host product's page and calls this gateway cross-origin, so it needs
the host's origin in ``CORS_ALLOWED_ORIGINS``, not a policy of this page.

``GET /inbox-sw.js`` is the page's service worker (registered with the scope ``/inbox``): it
shows the push channel's notifications while no inbox page is open. The page's policy lets
the page register it (``worker-src`` falls back to ``script-src 'self'``); the worker has a
policy of its own, which lets it load the icons notifications name, wherever they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import Route

from producer.gateway.static_assets import asset

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'"
)

#: The service worker's policy: it loads nothing but the icons of the notifications it shows,
#: which the application names (http(s) URLs, often of its own origin, not this one).
WORKER_POLICY = "default-src 'none'; img-src http: https:; frame-ancestors 'none'"


def content_security_policy(frame_ancestors: Sequence[str]) -> str:
    """The page's policy; ``frame_ancestors`` are the origins that may frame it."""
    ancestors = " ".join(frame_ancestors) or "'none'"
    return f"{POLICY}; frame-ancestors {ancestors}"


def _asset(name: str, media_type: str, path: str | None = None, *, of_the_page: bool = True) -> Route:
    """``of_the_page``: a part of the /inbox page, sent with its policy; the widget's script
    runs in other pages and keeps the gateway's default one (it is never a document)."""
    return asset(
        name,
        media_type,
        path or f"/{name}",
        prefix="inbox",
        summary=f"The inbox page: {name}"
        if of_the_page
        else "The <kai-inbox> element for other sites' pages",
        what="A static asset of the inbox page." if of_the_page else "The script that defines <kai-inbox>.",
        policy=(lambda settings: content_security_policy(settings.inbox_frame_ancestors))
        if of_the_page
        else None,
    )


routes = [
    _asset("inbox.html", "text/html; charset=utf-8", "/inbox"),
    _asset("inbox.js", "text/javascript"),
    _asset("inbox.css", "text/css"),
    asset(
        "inbox-sw.js",
        "text/javascript",
        "/inbox-sw.js",
        prefix="inbox",
        summary="The inbox page's service worker",
        what="The service worker that shows push notifications while no inbox page is open.",
        policy=lambda settings: WORKER_POLICY,
    ),
    _asset("widget.js", "text/javascript", "/inbox/widget.js", of_the_page=False),
]
