"""``/api/messages``: send on a channel (202 + id once the broker has it) and read a status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway.auth import require_server
from producer.gateway.bodies import read_json_object
from producer.service import NotificationService
from shared.channels import Channel


def _service(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.service
    return service


def sender(channel: Channel) -> Callable[[Request], Awaitable[JSONResponse]]:
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
