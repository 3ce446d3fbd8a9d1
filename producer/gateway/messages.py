"""``/api/messages``: send on a channel (202 + id once the broker has it), read a status, and
list the message log (:mod:`producer.gateway.message_log`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway import message_log
from producer.gateway.auth import require_reader, require_server
from producer.gateway.bodies import read_json_object
from producer.gateway.errors import ApiError
from producer.gateway.idempotency_header import FIELD, HEADER, with_header_key
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import BatchQueued, BatchRequest, MessageStatus, Queued
from producer.gateway.ratelimit import charge_more
from producer.service import REQUEST_MODELS, NotificationService
from shared.channels import Channel
from shared.errors import ValidationError
from shared.json_shape import MAX_JSON_VALUES
from shared.messages import ID_MAX_CHARS
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
        errors=(409, 503),
        description="Literal content, or `template` + `data` to render a stored template. The message "
        "is recorded and enqueued before the answer; an `idempotencyKey` this server key already "
        "used returns the first message's id for the same request, and 409 `idempotency_key_reused` "
        'for a different one. With `sendAt` (RFC 3339, or `{"localTime": "HH:MM"}` on the '
        "user's clock) or `delayMs` the message is stored `scheduled` and sent when due.",
    )
    async def send(request: Request) -> JSONResponse:
        service = _service(request)
        principal = require_server(request, service.settings)
        body = with_header_key(request, await read_json_object(request, service.settings.max_payload_bytes))
        # On the event loop: the insert and the confirmed publish are batched with every other
        # request in flight (producer.enqueue).
        answer = await service.aaccept(channel, body, idempotency_scope=principal.idempotency_scope)
        return JSONResponse(answer, status_code=202)

    send.__name__ = f"send_{channel.value}"
    return send


#: Most messages one batch may carry.
MAX_BATCH_MESSAGES = 1000
#: A batch body may hold this many times the values one message may.
MAX_BATCH_VALUES_FACTOR = 10
#: The largest batch body: room for a full batch of messages of a few KiB each (every message
#: is still held to MAX_PAYLOAD_BYTES on its own).
MAX_BATCH_BODY_BYTES = 8 * 1024 * 1024
#: The longest ``Idempotency-Key`` a batch takes: ``<key>:<index>`` must fit an item's key.
MAX_BATCH_KEY_CHARS = ID_MAX_CHARS - len(f":{MAX_BATCH_MESSAGES - 1}")


@operation(
    "POST",
    "Send up to 1,000 messages at once",
    auth=Auth.SERVER,
    body=BatchRequest,
    replies=[Reply(202, "One result per message, in order: its id, or why it was refused.", BatchQueued)],
    errors=(413, 503),
    description="Each item is validated on its own: one refused item does not stop the others, "
    "and nothing of a refused item is enqueued. Every item counts against the send budget. "
    "An `Idempotency-Key` header makes the whole batch idempotent: each item without an "
    "`idempotencyKey` of its own is keyed `<header>:<index>`, so the same batch sent again "
    "gets the same ids, and an item changed under the same header is refused on its own "
    f"(`idempotency_key_reused`). The header takes 1 to {MAX_BATCH_KEY_CHARS} characters.",
)
async def send_batch(request: Request) -> JSONResponse:
    service = _service(request)
    principal = require_server(request, service.settings)
    body = await read_json_object(
        request, MAX_BATCH_BODY_BYTES, max_values=MAX_JSON_VALUES * MAX_BATCH_VALUES_FACTOR
    )
    items = body.get("messages")
    if set(body) != {"messages"} or not isinstance(items, list) or not items:
        message = 'the body is {"messages": [...]} with at least one message'
        raise ValidationError(message, [{"field": "messages", "message": message}])
    if len(items) > MAX_BATCH_MESSAGES:
        raise ApiError(
            413, "payload_too_large", f"{len(items)} messages; a batch holds at most {MAX_BATCH_MESSAGES}"
        )
    items = _keyed_by_header(request, items)
    charge_more(request, key_fingerprint=principal.key_fingerprint, units=len(items) - 1)
    results = await service.asend_many(items, idempotency_scope=principal.idempotency_scope)
    return JSONResponse({"results": results}, status_code=202)


def _keyed_by_header(request: Request, items: list[Any]) -> list[Any]:
    """The batch's items, each without a key of its own keyed ``<header>:<index>`` when the
    request has an ``Idempotency-Key`` header. The index, not the item's content, names the
    item: a retry of the same batch repeats every key, while a changed item is refused."""
    key = request.headers.get(HEADER)
    if key is None:
        return items
    if not 1 <= len(key.strip()) <= MAX_BATCH_KEY_CHARS:
        message = f"a batch's Idempotency-Key holds 1 to {MAX_BATCH_KEY_CHARS} characters"
        raise ValidationError(message, [{"field": "Idempotency-Key", "message": message}])
    return [
        {**item, FIELD: f"{key.strip()}:{index}"}
        if isinstance(item, dict) and FIELD not in item and "idempotency_key" not in item
        else item
        for index, item in enumerate(items)
    ]


@operation(
    "GET",
    "Delivery status of a message",
    auth=Auth.SERVER_OR_USER,
    replies=[Reply(200, "Where the message stands, from its notification log.", MessageStatus)],
    errors=(404,),
    description="Any message with a server key; with `X-User-Id` (or a user token) only that "
    "user's: another user's message answers 404, as one that does not exist.",
)
async def status(request: Request) -> JSONResponse:
    service = _service(request)
    acting_for = require_reader(request, service.settings).user_id
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
    Channel.PUSH: "push",
    Channel.CHAT: "chat",
}

routes = [
    Route("/api/messages", message_log.list_messages, methods=["GET"]),
    Route("/api/messages/batch", send_batch, methods=["POST"]),
    *(Route(f"/api/messages/{path}", sender(ch), methods=["POST"]) for ch, path in CHANNEL_PATHS.items()),
    Route("/api/messages/{message_id:str}", status, methods=["GET"]),
]
