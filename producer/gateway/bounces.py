"""Bounce and complaint reports in, and the email suppression list (:mod:`producer.bounces`,
:mod:`shared.suppressions`), for server keys.

``POST /api/receipts/email`` takes one report as the raw message the mail server sent back
(``Content-Type: message/rfc822``): an inbound-mail hook, or a mailbox script, posts each
bounce or complaint that reaches the return path. ``GET /api/suppressions`` lists the
suppressed addresses; ``DELETE /api/suppressions/{address}`` lifts one (the address works
again: the mailbox was created, the complaint was a mistake).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer import bounces
from producer.enqueue import enqueuer_for
from producer.gateway.auth import server_settings
from producer.gateway.bodies import read_limited
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import ReportResult, Suppressions
from producer.gateway.pagination import CURSOR, LIMIT, body, page_request, text
from shared import suppressions
from shared.channels import Channel
from shared.db.rls import system_scope

#: A report may carry the whole original message.
MAX_REPORT_BYTES = 1024 * 1024
REPORT_MEDIA_TYPE = "message/rfc822"


@operation(
    "POST",
    "Take in a bounce or a complaint report",
    auth=Auth.SERVER,
    replies=[Reply(200, "What the report said, per message; each is now a receipt of it.", ReportResult)],
    errors=(413, 415, 422),
    description="The body is the report as received (`Content-Type: message/rfc822`): a delivery "
    "status notification (RFC 3464) or an ARF complaint (RFC 5965), with the original message or "
    "its headers (our `X-KAI-Message-Id` names the email), or sent to an email's own return path "
    "(`EMAIL_BOUNCE_ADDRESS`'s VERP form, in `Delivered-To`, `X-Original-To`, `Envelope-To` or "
    "`To`). A hard bounce fails the email and "
    "suppresses the address; a complaint suppresses it; a soft bounce is only kept. 422 "
    "`not_a_report` for anything else, and nothing changes.",
)
async def take_report(request: Request) -> JSONResponse:
    settings = server_settings(request)
    raw = await read_limited(request, MAX_REPORT_BYTES, media_type=REPORT_MEDIA_TYPE)
    try:
        findings = bounces.read(raw, bounce_address=settings.email_bounce_address)
        forwarded = await run_in_threadpool(bounces.record, settings, findings)
    except bounces.NotAReport as exc:
        raise ApiError(422, "not_a_report", str(exc)) from None
    await enqueuer_for(settings).publish_written([(Channel.WEBHOOK, i) for i in forwarded])
    return JSONResponse({"receipts": [_view(f) for f in findings]})


def _view(finding: bounces.Finding) -> dict[str, Any]:
    return {
        "messageId": finding.message_id,
        "type": finding.type,
        "code": finding.code,
        "recipient": finding.recipient,
        "suppressed": finding.suppress is not None,
    }


@operation(
    "GET",
    "List the suppressed email addresses",
    auth=Auth.SERVER,
    replies=[Reply(200, "A page of suppressed addresses, in address order.", Suppressions)],
    params=(CURSOR, LIMIT),
    errors=(422,),
)
async def list_suppressions(request: Request) -> JSONResponse:
    settings = server_settings(request)
    page = page_request(request, [text])
    after = str(page.after[0]) if page.after else None

    def read() -> list[dict[str, Any]]:
        with system_scope(settings.database_url) as session:
            return suppressions.listed(session, after=after, limit=page.limit + 1)

    found = await run_in_threadpool(read)
    items, more = found[: page.limit], len(found) > page.limit
    return JSONResponse(body(items, [items[-1]["address"]] if more else None))


@operation(
    "DELETE",
    "Lift an address's suppression",
    auth=Auth.SERVER,
    replies=[Reply(204, "Emails go to the address again.", media_type=None)],
    errors=(404,),
)
async def lift(request: Request) -> Response:
    settings = server_settings(request)
    address = request.path_params["address"]

    def remove() -> bool:
        with system_scope(settings.database_url) as session:
            return suppressions.remove(session, address)

    if not await run_in_threadpool(remove):
        raise ApiError(404, "not_found", f"{address} is not suppressed")
    return Response(status_code=204)


routes = [
    Route("/api/receipts/email", take_report, methods=["POST"]),
    Route("/api/suppressions", list_suppressions, methods=["GET"]),
    Route("/api/suppressions/{address:str}", lift, methods=["DELETE"]),
]
