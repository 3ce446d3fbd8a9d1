"""``DELETE`` and ``PATCH /api/messages/{id}``: cancel a message that has not started, or move a
scheduled one to another time (:mod:`producer.scheduling`). Both answer the message's status
as ``GET /api/messages/{id}`` does, and reach the same messages: any with a server key, only
the acting user's with ``X-User-Id`` or a user token."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway.auth import require_reader
from producer.gateway.bodies import read_json_object
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import MessageStatus
from producer.scheduling import NewSendTime
from producer.service import NotificationService

#: A reschedule body holds one send time; anything near this size is not one.
MAX_RESCHEDULE_BODY_BYTES = 4096


def _service(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.service
    return service


@operation(
    "DELETE",
    "Cancel a message that has not started",
    auth=Auth.SERVER_OR_USER,
    replies=[Reply(200, "The message's status, now `canceled`: it will not be sent.", MessageStatus)],
    errors=(404, 409),
    description="A `scheduled` message, or a `queued` one no worker has taken yet, ends as `canceled`. "
    "Once a worker has taken it (`processing`, a retry pending) or it has finished, 409 "
    "`not_cancelable`. Against the scheduler publishing it at the same instant exactly one wins.",
)
async def cancel(request: Request) -> JSONResponse:
    service = _service(request)
    acting_for = require_reader(request, service.settings).user_id
    message_id = request.path_params["message_id"]
    view = await run_in_threadpool(lambda: service.cancel(message_id, for_user=acting_for))
    return JSONResponse(view)


@operation(
    "PATCH",
    "Reschedule a scheduled message",
    auth=Auth.SERVER_OR_USER,
    body=NewSendTime,
    replies=[Reply(200, "The message's status, with its new `sendAt`.", MessageStatus)],
    errors=(404, 409),
    description='`sendAt` (RFC 3339, or `{"localTime": "HH:MM"}` on the user\'s clock) or `delayMs` '
    "from now. Only while the message is `scheduled`: once the scheduler has published it, 409 "
    "`not_scheduled`.",
)
async def reschedule(request: Request) -> JSONResponse:
    service = _service(request)
    acting_for = require_reader(request, service.settings).user_id
    body = await read_json_object(request, MAX_RESCHEDULE_BODY_BYTES)
    message_id = request.path_params["message_id"]
    view = await run_in_threadpool(lambda: service.reschedule_to(message_id, body, acting_for))
    return JSONResponse(view)


routes = [
    Route("/api/messages/{message_id:str}", cancel, methods=["DELETE"]),
    Route("/api/messages/{message_id:str}", reschedule, methods=["PATCH"]),
]
