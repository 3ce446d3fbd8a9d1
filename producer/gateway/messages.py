"""``/api/messages``: send on a channel (202 + id once the broker has it) and read a status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway.auth import require_server
from producer.gateway.bodies import read_json_object
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import MessageStatus, Queued
from producer.service import REQUEST_MODELS, NotificationService
from shared.channels import Channel
from shared.templates.requests import TEMPLATED_MODELS

#: Accepted and enqueued: the answer of every send.
QUEUED = Reply(202, "Enqueued (not yet delivered); `GET /api/messages/{id}` follows it.", Queued)


def _service(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.service
    return service


def sender(channel: Channel) -> Callable[[Request], Awaitable[JSONResponse]]:
    @operation(
        "POST",
        f"Send a message by {CHANNEL_PATHS[channel]}",
        auth=Auth.SERVER,
        body=(REQUEST_MODELS[channel], TEMPLATED_MODELS[channel]),
        replies=[QUEUED],
        errors=(503,),
        description="Literal content, or `template` + `data` to render a stored template. The message "
        "is recorded and enqueued before the answer; an `idempotencyKey` already used returns the "
        "first message's id.",
    )
    async def send(request: Request) -> JSONResponse:
        service = _service(request)
        require_server(request, service.settings)
        body = await read_json_object(request, service.settings.max_payload_bytes)
        # The insert and the confirmed publish block, so the whole enqueue runs on the
        # thread pool, never on the event loop.
        message_id = await run_in_threadpool(service.submit, channel, body)
        return JSONResponse({"id": message_id, "status": "queued"}, status_code=202)

    send.__name__ = f"send_{channel.value}"
    return send


@operation(
    "GET",
    "Delivery status of a message",
    auth=Auth.SERVER,
    replies=[Reply(200, "Where the message stands, from its notification log.", MessageStatus)],
    errors=(404,),
)
async def status(request: Request) -> JSONResponse:
    service = _service(request)
    acting_for = require_server(request, service.settings).user_id
    view = await run_in_threadpool(
        lambda: service.get_status(request.path_params["message_id"], for_user=acting_for)
    )
    return JSONResponse(view)


#: The HTTP path of each channel (the brief writes ``in-app`` with a dash).
CHANNEL_PATHS = {
    Channel.EMAIL: "email",
    Channel.SMS: "sms",
    Channel.WEBHOOK: "webhook",
    Channel.IN_APP: "in-app",
}

routes = [
    *(Route(f"/api/messages/{path}", sender(ch), methods=["POST"]) for ch, path in CHANNEL_PATHS.items()),
    Route("/api/messages/{message_id:str}", status, methods=["GET"]),
]
