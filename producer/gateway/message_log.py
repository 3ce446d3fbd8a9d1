"""``GET /api/messages``: the message log, newest first, filtered and paged by cursor.

A server key reads every message, or with ``X-User-Id`` that user's; a user token reads
its own user's. The filters are query parameters; one that is unknown, repeated or
malformed answers 422 naming it, rather than being ignored and listing more than was asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from producer import message_log
from producer.gateway import pagination
from producer.gateway.auth import require_reader
from producer.gateway.openapi import Auth, Param, Reply, operation
from producer.gateway.openapi.views import MessageLog
from producer.service import NotificationService
from shared.channels import Channel, Status
from shared.db.rls import scope_for
from shared.messages import ID_MAX_CHARS

#: What a cursor of the log holds: the last message's (createdAt, id).
CURSOR = (pagination.moment, pagination.text)

#: RFC 3339 ``date-time``: a full date and time with a UTC offset (``Z`` or ``±hh:mm``).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)

#: Channel names as a filter takes them: as messages show them, and as the send path spells in-app.
CHANNEL_NAMES = [*(c.value for c in Channel), "in-app"]

IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": ID_MAX_CHARS}
MOMENT = {"type": "string", "format": "date-time"}
FILTERS = (
    Param("status", "Only messages in this state.", {"type": "string", "enum": [s.value for s in Status]}),
    Param("channel", "Only messages on this channel.", {"type": "string", "enum": CHANNEL_NAMES}),
    Param("userId", "Only this user's messages.", IDENTIFIER),
    Param("eventType", "Only messages of this event type.", IDENTIFIER),
    Param("templateKey", "Only messages rendered from this template.", IDENTIFIER),
    Param("createdFrom", "Only messages created at or after this RFC 3339 time.", MOMENT),
    Param("createdTo", "Only messages created before this RFC 3339 time.", MOMENT),
)
KNOWN_PARAMETERS = frozenset(p.name for p in (*FILTERS, *pagination.PARAMS))
#: How much of an unknown parameter's name a refusal repeats.
ECHOED_NAME_CHARS = 64


@operation(
    "GET",
    "The message log, newest first",
    auth=Auth.SERVER_OR_USER,
    params=(*FILTERS, *pagination.PARAMS),
    replies=[Reply(200, "A page of messages; `nextCursor` is null on the last page.", MessageLog)],
    errors=(422,),
    description="Every message a server key sent, or with `X-User-Id` (or a user token) only that "
    "user's. Each item is what `GET /api/messages/{id}` answers. Filters combine; an unknown, "
    "repeated or malformed one answers 422.",
)
async def list_messages(request: Request) -> JSONResponse:
    service: NotificationService = request.app.state.service
    acting_for = require_reader(request, service.settings).user_id
    filters = _filters(request)
    page = pagination.page_request(request, CURSOR)

    def read() -> dict[str, Any]:
        with scope_for(service.settings.database_url, acting_for) as session:
            rows, more = message_log.page(session, filters, page.after, page.limit, for_user=acting_for)
            return pagination.body([message_log.view(row) for row in rows], more)

    return JSONResponse(await run_in_threadpool(read))


def _filters(request: Request) -> message_log.LogFilter:
    params = request.query_params
    for name in params:
        if name not in KNOWN_PARAMETERS:
            known = ", ".join(sorted(KNOWN_PARAMETERS))
            raise pagination.invalid(name[:ECHOED_NAME_CHARS], f"is not a parameter of this list ({known})")
        if len(params.getlist(name)) > 1:
            raise pagination.invalid(name, "is given more than once")

    def given(name: str, parse: Callable[[str], Any]) -> Any:
        raw = params.get(name)
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            raise pagination.invalid(name, str(exc)) from None

    created_from, created_to = given("createdFrom", _moment), given("createdTo", _moment)
    if created_from is not None and created_to is not None and created_from > created_to:
        raise pagination.invalid("createdFrom", "is after createdTo")
    return message_log.LogFilter(
        status=given("status", _status),
        channel=given("channel", _channel),
        user_id=given("userId", _identifier),
        event_type=given("eventType", _identifier),
        template_key=given("templateKey", _identifier),
        created_from=created_from,
        created_to=created_to,
    )


def _status(raw: str) -> Status:
    try:
        return Status(raw)
    except ValueError:
        raise ValueError(f"must be one of {', '.join(s.value for s in Status)}") from None


def _channel(raw: str) -> Channel:
    if raw not in CHANNEL_NAMES:
        raise ValueError(f"must be one of {', '.join(CHANNEL_NAMES)}")
    return Channel.parse(raw)


def _identifier(raw: str) -> str:
    if not 1 <= len(raw) <= ID_MAX_CHARS:
        raise ValueError(f"must be 1 to {ID_MAX_CHARS} characters")
    try:
        return pagination.text(raw)
    except ValueError:
        raise ValueError("must not hold a NUL character") from None


def _moment(raw: str) -> datetime:
    if not RFC3339.fullmatch(raw):
        raise ValueError("must be an RFC 3339 time with its offset, e.g. 2026-01-31T09:00:00Z")
    try:
        return pagination.moment(raw)
    except (ValueError, OverflowError):
        raise ValueError("is not a time that exists (check the day, the hour and the offset)") from None
