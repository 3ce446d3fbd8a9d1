"""``GET /api/notifications/stream``: the caller's inbox as Server-Sent Events.

Events: ``notification`` (a new notification, as the feed shows it; its SSE id is the
notification's position, so ``Last-Event-ID`` resumes after it) and ``unread-count``
(``{"count": n}``, sent on connect and whenever the count changes); ``resync`` asks the
client to reload its feed because more was missed than a replay carries. A comment line is
sent when the stream is idle, so proxies keep it open.

The stream subscribes before it reads the database, so a notification committed while it
connects is either replayed or delivered live (possibly both: clients drop repeats by id).
A stream that falls behind or loses its feed ends; the client's automatic reconnect then
replays what it missed. Browsers' ``EventSource`` cannot send headers, so a user token may
come in the ``access_token`` query parameter; it is never logged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from producer.gateway.auth import require_user_for_stream
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Param, Reply, operation
from producer.service import NotificationService
from shared import inbox
from shared.config import Settings
from shared.db.rls import user_scope
from shared.realtime import Hub, InboxEvent, TooManyStreams
from shared.realtime.announce import count_event, notification_event
from shared.realtime.base import Stream

#: How long a browser waits before reconnecting a dropped stream, in milliseconds.
RECONNECT_DELAY_MS = 1000

#: Seconds a client over its stream limit is asked to wait.
TOO_MANY_RETRY_AFTER_SECONDS = 5

HEADERS = {
    "Cache-Control": "no-store",
    # nginx and similar proxies buffer responses unless told not to.
    "X-Accel-Buffering": "no",
}


def frame(event: InboxEvent) -> bytes:
    lines = []
    if event.id is not None:
        lines.append(f"id: {event.id}")
    lines.append(f"event: {event.kind}")
    lines.append(f"data: {json.dumps(event.data, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


def _resume_point(request: Request) -> inbox.Position | None:
    last = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    if not last:
        return None
    try:
        return inbox.Position.parse(last.strip())
    except ValueError:
        raise ApiError(
            422,
            "validation_error",
            "Last-Event-ID is not an event id this stream sent",
            [{"field": "Last-Event-ID", "message": "unknown event id"}],
        ) from None


class EventStreamResponse(StreamingResponse):
    """Releases the stream's slot however the response ends: a client that disconnects
    early can cancel the body before it ever starts, and then its ``finally`` never runs."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream", headers=HEADERS)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _catch_up(
    settings: Settings, user_id: str, after: inbox.Position | None
) -> tuple[list[inbox.Shown], int]:
    with user_scope(settings.database_url, user_id) as session:
        connection = session.connection()
        missed = inbox.replay(connection, user_id, after) if after is not None else []
        return missed, inbox.unread_count(connection, user_id)


async def _events(
    hub: Hub, stream: Stream, missed: list[inbox.Shown], unread: int, heartbeat_seconds: float
) -> AsyncIterator[bytes]:
    try:
        yield f"retry: {RECONNECT_DELAY_MS}\n\n".encode()
        replayed = {row.id for row in missed}
        for row in missed:
            yield frame(notification_event(row))
        if len(missed) >= inbox.REPLAY_LIMIT:
            yield frame(InboxEvent(stream.user_id, "resync", {}))
        yield frame(count_event(stream.user_id, unread))
        while True:
            try:
                event = await asyncio.wait_for(stream.queue.get(), heartbeat_seconds)
            except TimeoutError:
                yield b": ping\n\n"
                continue
            if stream.broken.is_set() or event is None:
                return
            if event.kind == "notification" and event.data.get("id") in replayed:
                continue
            yield frame(event)
    finally:
        hub.streams.close(stream)


@operation(
    "GET",
    "The user's inbox as Server-Sent Events",
    auth=Auth.USER_OR_QUERY_TOKEN,
    params=[
        Param("Last-Event-ID", "Resume after this event (browsers send it on reconnect).", location="header"),
        Param("lastEventId", "Like the Last-Event-ID header, for a first connection."),
    ],
    replies=[
        Reply(
            200,
            "Events `notification`, `unread-count` and `resync`, with comment pings while idle.",
            media_type="text/event-stream",
        )
    ],
    errors=(422,),
)
async def stream_endpoint(request: Request) -> StreamingResponse:
    service: NotificationService = request.app.state.service
    settings = service.settings
    principal = require_user_for_stream(request, settings)
    assert principal.user_id is not None
    after = _resume_point(request)
    hub: Hub = request.app.state.hub
    try:
        stream = hub.streams.open(principal.user_id, settings.sse_max_connections_per_user)
    except TooManyStreams:
        raise ApiError(
            429,
            "too_many_streams",
            f"at most {settings.sse_max_connections_per_user} open streams per user",
            headers={"Retry-After": str(TOO_MANY_RETRY_AFTER_SECONDS)},
        ) from None
    try:
        missed, unread = await run_in_threadpool(_catch_up, settings, principal.user_id, after)
    except BaseException:
        hub.streams.close(stream)
        raise
    body = _events(hub, stream, missed, unread, settings.sse_heartbeat_ms / 1000)
    return EventStreamResponse(body, on_close=lambda: hub.streams.close(stream))


routes = [Route("/api/notifications/stream", stream_endpoint, methods=["GET"])]
