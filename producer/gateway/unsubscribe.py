"""``/unsubscribe/{token}``: the one-click unsubscribe link every non-critical email to a user
carries (``List-Unsubscribe``, RFC 8058), when ``PUBLIC_BASE_URL`` and ``UNSUBSCRIBE_SECRET``
are set (:mod:`producer.unsubscribe`).

``POST`` is the one click: mailbox providers send ``List-Unsubscribe=One-Click`` to it, and
it turns the preference off at once. ``GET`` only shows a page with a button that posts:
mail security scanners and link prefetchers open every link in a message, and must not
unsubscribe anyone by doing so. The link is the credential (signed, expiring, naming one
email); anything else is 403 (410 once expired; both in the API's JSON error shape) and
changes nothing.
"""

from __future__ import annotations

from html import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from producer import receipts, unsubscribe
from producer.gateway.auth import app_settings
from producer.gateway.bodies import read_limited
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Reply, operation
from shared.unsubscribe import ExpiredLink, InvalidLink

#: Mailbox providers post ``List-Unsubscribe=One-Click``; a confirmation form posts nothing.
MAX_BODY_BYTES = 1024
#: The link is a credential: no cache keeps the page, no referrer carries it anywhere.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(title: str, body: str) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, headers=HEADERS)


async def _subject(request: Request) -> unsubscribe.Subject:
    try:
        return await run_in_threadpool(
            unsubscribe.subject_of, app_settings(request), request.path_params["token"]
        )
    except ExpiredLink as exc:
        raise ApiError(410, "link_expired", str(exc)) from None
    except InvalidLink as exc:
        raise ApiError(403, "forbidden", str(exc)) from None


@operation(
    "GET",
    "The page behind an email's unsubscribe link",
    auth=Auth.PUBLIC,
    replies=[
        Reply(
            200, "A page naming what the link turns off, with a button that does it.", media_type="text/html"
        )
    ],
    errors=(403, 404, 410),
    description="Changes nothing (link scanners open every link): the button posts to the same URL.",
)
async def confirm_page(request: Request) -> HTMLResponse:
    subject = await _subject(request)
    return _page(
        "Unsubscribe",
        f"<p>Stop receiving {escape(subject.what)}?</p>"
        '<form method="post"><button type="submit">Unsubscribe</button></form>',
    )


@operation(
    "POST",
    "One-click unsubscribe (RFC 8058)",
    auth=Auth.PUBLIC,
    replies=[Reply(200, "Done (or done before): a page saying what was turned off.", media_type="text/html")],
    errors=(403, 404, 410, 413),
    description="What mailbox providers call with `List-Unsubscribe=One-Click`. An email sent for an "
    "event type turns email off for that type; one sent directly turns the user's email off. "
    "The message gets an `unsubscribed` receipt.",
)
async def one_click(request: Request) -> HTMLResponse:
    await read_limited(request, MAX_BODY_BYTES)  # its content does not matter
    subject = await _subject(request)
    settings = app_settings(request)
    forwarded = await run_in_threadpool(unsubscribe.apply, settings, subject)
    await receipts.publish_forwarded(settings, forwarded)
    return _page("You are unsubscribed", f"<p>You will no longer receive {escape(subject.what)}.</p>")


routes = [
    Route("/unsubscribe/{token:str}", confirm_page, methods=["GET"]),
    Route("/unsubscribe/{token:str}", one_click, methods=["POST"]),
]
