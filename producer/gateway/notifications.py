"""``/api/notifications``: the caller's inbox (feed, unread count, mark seen, read or unread,
record a click, delete, test).

Every endpoint acts for the user of the credential (a user token, or a server key with
``X-User-Id``) and for nobody else. Changes that move the unread count are announced to the
user's open streams after they commit. What the user does to a notification that came from
a message (sees it, reads it, follows its action) becomes that message's receipt
(:func:`producer.receipts.record_inbox`), in the transaction that marks the notification.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal, cast

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer import receipts
from producer.gateway import idempotency_header, pagination
from producer.gateway.auth import require_user
from producer.gateway.bodies import read_json_object
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Param, Reply, operation
from producer.gateway.openapi.views import (
    Clicked,
    Deleted,
    Feed,
    MarkedRead,
    MarkedSeen,
    Queued,
    UnreadCount,
)
from producer.service import NotificationService
from shared import inbox
from shared.channels import Channel
from shared.config import Settings
from shared.db.rls import async_user_scope
from shared.realtime.announce import announce, count_event

#: Most ids one call naming notifications (mark seen or read, clicked, delete) may name.
MAX_IDS_PER_CALL = 1000

#: Longest id accepted in a list (notification ids are UUIDs).
MAX_ID_CHARS = 64

TYPES = ("info", "success", "warning", "error")
STATUSES = ("all", "read", "unread")

TEST_NOTIFICATION = {
    "title": "Test notification",
    "message": "If you can read this, in-app notifications reach you.",
    "type": "info",
}


class IdsInput(BaseModel):
    """The body of the calls naming notifications: seen, clicked, mark-as-read and delete
    (checked by :func:`_ids`, which names the field ``ids`` in every refusal)."""

    ids: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]] = Field(
        max_length=MAX_IDS_PER_CALL
    )


FEED_PARAMS = (
    Param("status", "Which notifications.", {"type": "string", "enum": list(STATUSES), "default": "all"}),
    Param("type", "Only this type.", {"type": "string", "enum": list(TYPES)}),
    Param(
        "since", "Only those created at or after this ISO 8601 time (with a UTC offset).", {"type": "string"}
    ),
    *pagination.PARAMS,
)
#: What a cursor of the feed holds: the last notification's (createdAt, id).
CURSOR = (pagination.moment, pagination.text)


def _service(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.service
    return service


def _user(request: Request) -> tuple[Settings, str]:
    settings = _service(request).settings
    principal = require_user(request, settings)
    assert principal.user_id is not None  # require_user refuses a principal without a user
    return settings, principal.user_id


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def _feed_query(request: Request) -> tuple[inbox.FeedFilter, inbox.Position | None, int]:
    page = pagination.page_request(request, CURSOR)
    params = request.query_params
    status = params.get("status", "all")
    if status not in STATUSES:
        raise _invalid("status", f"must be one of {', '.join(STATUSES)}")
    kind = params.get("type")
    if kind is not None and kind not in TYPES:
        raise _invalid("type", f"must be one of {', '.join(TYPES)}")
    since = None
    if "since" in params:
        try:
            since = datetime.fromisoformat(params["since"])
        except ValueError:
            raise _invalid("since", "must be an ISO 8601 timestamp") from None
        if since.tzinfo is None:
            raise _invalid("since", "must carry a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    after = None if page.after is None else inbox.Position(*page.after)
    return inbox.FeedFilter(cast(inbox.Status, status), kind, since), after, page.limit


@operation(
    "GET",
    "The user's notifications, newest first",
    auth=Auth.USER,
    params=FEED_PARAMS,
    replies=[Reply(200, "A page of the feed; `nextCursor` is null on the last page.", Feed)],
    errors=(422,),
)
async def feed(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    filters, after, limit = _feed_query(request)

    async with async_user_scope(settings.database_url, user_id) as connection:
        rows, more = await connection.run_sync(inbox.page, user_id, filters, after, limit)
    position = None if more is None else (more.created_at, more.id)
    return JSONResponse(pagination.body([inbox.view(r) for r in rows], position))


@operation(
    "GET",
    "How many of the user's notifications are unread",
    auth=Auth.USER,
    replies=[Reply(200, "The unread count.", UnreadCount)],
)
async def unread(request: Request) -> JSONResponse:
    settings, user_id = _user(request)

    async with async_user_scope(settings.database_url, user_id) as connection:
        count = await connection.run_sync(inbox.unread_count, user_id)
    return JSONResponse({"count": count})


async def _ids(request: Request, settings: Settings) -> list[str]:
    body = await read_json_object(request, settings.max_payload_bytes)
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in ids):
        raise _invalid("ids", "must be a list of notification ids")
    if len(ids) > MAX_IDS_PER_CALL:
        raise _invalid("ids", f"at most {MAX_IDS_PER_CALL} ids per call")
    return list(dict.fromkeys(ids))


def _acts(action: receipts.InboxAction, messages: Sequence[str | None]) -> list[receipts.Acted]:
    """The receipts of ``action`` on the notifications' messages (one from no message has none)."""
    return [receipts.Acted(m, action) for m in messages if m]


async def _change(settings: Settings, user_id: str, verb: str, ids: list[str] | None) -> JSONResponse:
    def run(connection: Connection) -> tuple[int, int, list[str]]:
        if verb == "delete":
            deleted = inbox.soft_delete(connection, user_id, ids or [])
            return deleted, inbox.unread_count(connection, user_id), []
        if verb == "unread":
            marked = inbox.mark_unread(connection, user_id, ids or [])
            return marked, inbox.unread_count(connection, user_id), []
        # Reading implies seeing: one not seen yet is seen now, with its receipt before the read.
        if ids is None:
            seen, read = inbox.mark_all_seen_and_read(connection, user_id)
        else:
            seen, read = inbox.mark_seen(connection, user_id, ids), inbox.mark_read(connection, user_id, ids)
        count = inbox.unread_count(connection, user_id)
        acts = _acts("seen", seen) + _acts("read", read)
        return len(read), count, receipts.record_inbox(connection, settings, user_id, acts)

    async with async_user_scope(settings.database_url, user_id) as scope:
        changed, count, forwarded = await scope.run_sync(run)
    if changed:
        # After the commit: a stream must never show a count the database does not hold.
        await run_in_threadpool(announce, settings, count_event(user_id, count))
    await receipts.publish_forwarded(settings, forwarded)
    key = "deleted" if verb == "delete" else "updated"
    return JSONResponse({key: changed, "unreadCount": count})


async def _engage(
    settings: Settings, user_id: str, action: Literal["seen", "clicked"], ids: list[str]
) -> JSONResponse:
    def run(connection: Connection) -> tuple[int, list[str]]:
        seen = inbox.mark_seen(connection, user_id, ids)
        acts = _acts("seen", seen)
        if action == "seen":
            changed = len(seen)
        else:
            # Following the action shows the notification too: seen first, then clicked.
            followed = inbox.followed(connection, user_id, ids)
            acts += [receipts.Acted(f.message_id, "clicked", f.action_url) for f in followed if f.message_id]
            changed = len(followed)
        return changed, receipts.record_inbox(connection, settings, user_id, acts)

    async with async_user_scope(settings.database_url, user_id) as scope:
        changed, forwarded = await scope.run_sync(run)
    await receipts.publish_forwarded(settings, forwarded)
    return JSONResponse({"updated" if action == "seen" else "clicked": changed})


@operation(
    "POST",
    "Mark notifications seen",
    auth=Auth.USER,
    body=IdsInput,
    replies=[Reply(200, "How many were seen now (those seen before are left as they were).", MarkedSeen)],
    description="For an inbox to call with the notifications it has just shown (a page of the feed, "
    "one arriving on the stream). Each one seen for the first time gets its `seenAt`, and its "
    "message a `seen` receipt (`message.seen` for webhook endpoints); ids that are not the "
    "caller's match nothing.",
)
async def mark_as_seen(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    return await _engage(settings, user_id, "seen", await _ids(request, settings))


@operation(
    "POST",
    "Record that the user followed notifications' actions",
    auth=Auth.USER,
    body=IdsInput,
    replies=[Reply(200, "How many of the ids are the caller's notifications.", Clicked)],
    description="For an inbox to call as the user follows a notification's `actionUrl` (with "
    "`fetch(..., {keepalive: true})`, so the navigation does not cancel it). The message gets one "
    "`clicked` receipt, code `human`, whose `detail` is the `actionUrl` (`message.clicked` for "
    "webhook endpoints); a click also marks the notification seen. It does not mark it read. "
    "Ids that are not the caller's match nothing.",
)
async def clicked(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    return await _engage(settings, user_id, "clicked", await _ids(request, settings))


@operation(
    "POST",
    "Mark notifications read",
    auth=Auth.USER,
    body=IdsInput,
    replies=[Reply(200, "How many changed, and the unread count after.", MarkedRead)],
    description="Each one read now gets its `readAt`, and its message a `read` receipt; reading "
    "implies seeing, so one not seen before also gets its `seenAt` and a `seen` receipt.",
)
async def mark_as_read(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    return await _change(settings, user_id, "read", await _ids(request, settings))


@operation(
    "POST",
    "Mark notifications unread",
    auth=Auth.USER,
    body=IdsInput,
    replies=[Reply(200, "How many changed, and the unread count after.", MarkedRead)],
    description="For a user keeping a notification for later: each read one becomes unread "
    "again. Its message keeps the receipts it has (it was read).",
)
async def mark_as_unread(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    return await _change(settings, user_id, "unread", await _ids(request, settings))


@operation(
    "POST",
    "Mark all the user's notifications read",
    auth=Auth.USER,
    replies=[Reply(200, "How many changed, and the unread count after.", MarkedRead)],
)
async def mark_all_as_read(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    return await _change(settings, user_id, "read", None)


@operation(
    "POST",
    "Delete notifications",
    auth=Auth.USER,
    body=IdsInput,
    replies=[Reply(200, "How many were deleted, and the unread count after.", Deleted)],
)
async def delete(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    return await _change(settings, user_id, "delete", await _ids(request, settings))


@operation(
    "POST",
    "Send the user a test in-app notification",
    auth=Auth.USER,
    params=[idempotency_header.PARAM],
    replies=[Reply(202, "Enqueued.", Queued)],
    errors=(409, 422, 503),
    description="With an `Idempotency-Key`, a retry gets the first test's id instead of a second "
    "notification, as a send does.",
)
async def send_test(request: Request) -> JSONResponse:
    service = _service(request)
    principal = require_user(request, service.settings)
    fields = idempotency_header.with_header_key(request, {**TEST_NOTIFICATION, "userId": principal.user_id})
    message_id = await service.asubmit(Channel.IN_APP, fields, idempotency_scope=principal.idempotency_scope)
    return JSONResponse({"id": message_id, "status": "queued"}, status_code=202)


routes = [
    Route("/api/notifications", feed, methods=["GET"]),
    Route("/api/notifications/unread-count", unread, methods=["GET"]),
    Route("/api/notifications/seen", mark_as_seen, methods=["POST"]),
    Route("/api/notifications/clicked", clicked, methods=["POST"]),
    Route("/api/notifications/mark-as-read", mark_as_read, methods=["POST"]),
    Route("/api/notifications/mark-as-unread", mark_as_unread, methods=["POST"]),
    Route("/api/notifications/mark-all-as-read", mark_all_as_read, methods=["POST"]),
    Route("/api/notifications/delete", delete, methods=["POST"]),
    Route("/api/notifications/test", send_test, methods=["POST"]),
]
