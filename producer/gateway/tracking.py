"""``/t/o/{token}`` and ``/t/c/{token}``: an email's tracking pixel and click redirects
(:mod:`shared.engagement` makes them, :mod:`producer.engagement` keeps what they report).

Both are public: the token is all there is. The pixel always answers the same transparent
GIF, whatever the token, so a mail client never shows a broken image and nobody learns from
the answer whether a token is good; only a good one is recorded. The redirect sends the
reader to the URL sealed in its token and nowhere else (a forged or altered token is a 404,
never a redirect). Nothing is cached or passed on as a referrer.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from producer import engagement, receipts
from producer.gateway.auth import app_settings
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Reply, operation
from shared import engagement as links
from shared.config import Settings
from shared.db.group_commit import GroupCommit
from shared.db.models import utcnow
from shared.db.rls import act_as_system

#: A 1x1 transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
HEADERS = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


async def _record(request: Request, kind: links.Kind) -> links.Mark | None:
    """The token's mark, once what it reports is kept; None for a token that is not ours
    or not of ``kind``."""
    settings = app_settings(request)
    try:
        mark = links.unseal(settings, request.path_params["token"])
    except links.NotATrackingToken:
        return None
    if mark.kind != kind:
        return None
    hit = engagement.Hit(mark, request.method, request.headers.get("user-agent", ""), utcnow())
    forwarded = await hits_writer(request.app.state, settings).call(hit)
    await receipts.publish_forwarded(settings, forwarded)
    return mark


def hits_writer(state: Any, settings: Settings) -> GroupCommit[engagement.Hit, list[str]]:
    """The process's writer of tracking hits: the hits arriving while a batch is written are
    kept together in the next transaction (a newsletter's opens come in bursts), each caller
    answered once its own hit is committed."""
    writer: GroupCommit[engagement.Hit, list[str]] | None = getattr(state, "tracking_hits", None)
    if writer is None:

        def keep(connection: Connection, hits: Sequence[engagement.Hit]) -> list[list[str]]:
            # As the system: the reader is nobody we know. rollback_only: the writer commits.
            with Session(bind=connection, join_transaction_mode="rollback_only") as session:
                forwarded = engagement.record_many(session, settings, hits)
                session.commit()
            return forwarded

        writer = GroupCommit("tracking-hits", settings.database_url, keep, before=act_as_system)
        state.tracking_hits = writer
    return writer


@operation(
    "GET",
    "An email's tracking pixel",
    auth=Auth.PUBLIC,
    replies=[Reply(200, "A 1x1 transparent GIF, whatever the token.", media_type="image/gif")],
    description="Loaded by the reader's mail client: a good token records the email's `opened` "
    "receipt (`human`, or `bot` for a mail scanner, counted apart).",
)
async def pixel(request: Request) -> Response:
    await _record(request, "open")
    return Response(PIXEL, media_type="image/gif", headers=HEADERS)


@operation(
    "GET",
    "An email link's click redirect",
    auth=Auth.PUBLIC,
    replies=[Reply(302, "To the link's own URL.", media_type=None)],
    errors=(404,),
    description="Records the email's `clicked` receipt for that link, then redirects to the URL the "
    "email had there: a token names one URL of one email, and cannot be made or altered without "
    "`TRACKING_SECRET`.",
)
async def click(request: Request) -> Response:
    mark = await _record(request, "click")
    if mark is None or mark.url is None:
        raise ApiError(404, "not_found", "not a link of this service")
    return RedirectResponse(mark.url, status_code=302, headers=HEADERS)


routes = [
    Route(links.OPEN_PATH + "{token:str}", pixel, methods=["GET"]),
    Route(links.CLICK_PATH + "{token:str}", click, methods=["GET"]),
]
