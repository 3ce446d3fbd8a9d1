"""``/api/webhooks``: endpoint management (server key), delivery logs, test sends, replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer.gateway import idempotency_header, pagination
from producer.gateway.auth import require_server
from producer.gateway.bodies import read_json_object
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Param, Reply, operation
from producer.gateway.openapi.views import (
    DeliveryLogPage,
    Queued,
    Recovered,
    RotatedSecret,
    WebhookEndpoint,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookTestResult,
)
from producer.merge_patch import PATCH_SEMANTICS, PUT_SEMANTICS, patch_model
from producer.service import NotificationService
from producer.webhooks import WebhookAdmin
from shared.webhooks.endpoints import EndpointFields
from shared.webhooks.replay import ReplayRefused

#: How often ``POST .../test`` looks for the outcome of its attempt.
TEST_POLL_SECONDS = 0.05

Handler = Callable[[Request], Awaitable[Response]]


class RegenerateInput(BaseModel):
    """``POST .../regenerate-secret`` (body optional; checked by ``WebhookAdmin``)."""

    model_config = ConfigDict(extra="allow")

    grace_period_ms: int | None = Field(default=None, ge=0, alias="gracePeriodMs")


class RecoverInput(BaseModel):
    """``POST .../recover``: resend every failed delivery since this time."""

    model_config = ConfigDict(extra="allow")

    since: str = Field(description="An ISO 8601 time with a UTC offset, e.g. 2026-11-26T12:00:00Z.")


LOG_PARAMS = (
    Param("status", "`succeeded`, `failed`, or an HTTP status code the endpoint answered."),
    *pagination.PARAMS,
)
#: What a cursor of each list holds: (createdAt, id) of an endpoint, the id of an attempt.
ENDPOINTS_CURSOR = (pagination.moment, pagination.text)
LOGS_CURSOR = (pagination.integer,)


def _admin(request: Request) -> WebhookAdmin:
    service: NotificationService = request.app.state.service
    require_server(request, service.settings)
    return WebhookAdmin(service.settings)


async def _body(request: Request, admin: WebhookAdmin, *, optional: bool = False) -> dict[str, Any]:
    if optional and request.headers.get("content-length") in (None, "0"):
        return {}
    return await read_json_object(request, admin.settings.max_payload_bytes)


def _endpoint_id(request: Request) -> str:
    return str(request.path_params["endpoint_id"])


@operation(
    "GET",
    "The webhook endpoints, oldest first",
    auth=Auth.SERVER,
    params=pagination.PARAMS,
    replies=[
        Reply(
            200,
            "A page of endpoints, without their secrets; `nextCursor` is null on the last page.",
            WebhookEndpointList,
        )
    ],
    errors=(422,),
)
@operation(
    "POST",
    "Create a webhook endpoint",
    auth=Auth.SERVER,
    body=EndpointFields,
    params=[idempotency_header.PARAM],
    replies=[
        Reply(
            201,
            "The endpoint and its signing secret, shown this once (and again to a retry with the "
            "same Idempotency-Key).",
            WebhookEndpointCreated,
        )
    ],
    errors=(404, 409),
)
async def configurations(request: Request) -> Response:
    admin = _admin(request)
    if request.method == "POST":
        principal = require_server(request, admin.settings)
        body = await _body(request, admin)
        key = idempotency_header.creation_key(request, principal.idempotency_scope, body)
        return idempotency_header.created_response(await run_in_threadpool(admin.create, body, key))
    page = pagination.page_request(request, ENDPOINTS_CURSOR)
    items, more = await run_in_threadpool(admin.list_page, page.after, page.limit)
    return JSONResponse(pagination.body(items, more))


@operation(
    "GET",
    "A webhook endpoint",
    auth=Auth.SERVER,
    replies=[Reply(200, "The endpoint.", WebhookEndpoint)],
    errors=(404,),
)
@operation(
    "PUT",
    "Replace a webhook endpoint's settings",
    auth=Auth.SERVER,
    body=EndpointFields,
    replies=[Reply(200, "The endpoint after the change.", WebhookEndpoint)],
    errors=(404,),
    description=PUT_SEMANTICS + " `url` is required; left out, `eventTypes` is every type, "
    "`headers` none, `active` true (which re-enables an endpoint disabled for failing) and "
    "`ordered` false. The signing secret is never part of it: regenerate-secret changes it.",
)
@operation(
    "PATCH",
    "Change some of a webhook endpoint's settings",
    auth=Auth.SERVER,
    body=patch_model(EndpointFields),
    replies=[Reply(200, "The endpoint after the change.", WebhookEndpoint)],
    errors=(404,),
    description=PATCH_SEMANTICS + " `headers` merges by name: `null` for a name removes that "
    "header, and a value sent back masked as answers show it keeps the stored one. The signing "
    "secret is never part of it: regenerate-secret changes it.",
)
@operation(
    "DELETE",
    "Delete a webhook endpoint",
    auth=Auth.SERVER,
    replies=[Reply(204, "Deleted.", media_type=None)],
    errors=(404,),
)
async def configuration(request: Request) -> Response:
    admin = _admin(request)
    endpoint_id = _endpoint_id(request)
    if request.method == "PUT":
        body = await _body(request, admin)
        return JSONResponse(await run_in_threadpool(admin.replace, endpoint_id, body))
    if request.method == "PATCH":
        body = await _body(request, admin)
        return JSONResponse(await run_in_threadpool(admin.patch, endpoint_id, body))
    if request.method == "DELETE":
        await run_in_threadpool(admin.delete, endpoint_id)
        return Response(status_code=204)
    return JSONResponse(await run_in_threadpool(admin.get, endpoint_id))


@operation(
    "GET",
    "An endpoint's delivery attempts, newest first",
    auth=Auth.SERVER,
    params=LOG_PARAMS,
    replies=[Reply(200, "A page of attempts; `nextCursor` is null on the last page.", DeliveryLogPage)],
    errors=(404, 422),
)
async def logs(request: Request) -> Response:
    admin = _admin(request)
    page = pagination.page_request(request, LOGS_CURSOR)
    status = request.query_params.get("status")
    items, more = await run_in_threadpool(
        lambda: admin.logs(_endpoint_id(request), status=status, after=page.after, limit=page.limit)
    )
    return JSONResponse(pagination.body(items, more))


@operation(
    "POST",
    "Send the endpoint a signed test event",
    auth=Auth.SERVER,
    replies=[
        Reply(200, "The attempt finished: its outcome.", WebhookTestResult),
        Reply(202, "Not finished within WEBHOOK_TEST_TIMEOUT: follow `messageId`.", WebhookTestResult),
    ],
    errors=(404, 503),
)
async def test(request: Request) -> Response:
    """Send a signed test event and answer with its attempt's outcome, or 202 with the message
    id if the attempt has not finished within WEBHOOK_TEST_TIMEOUT."""
    admin = _admin(request)
    message_id = await run_in_threadpool(admin.send_test, _endpoint_id(request))
    deadline = time.monotonic() + admin.settings.webhooks.test_timeout_ms / 1000
    while time.monotonic() < deadline:
        attempt = await run_in_threadpool(admin.first_attempt, message_id)
        if attempt is not None:
            return JSONResponse({"messageId": message_id, "status": "attempted", "attempt": attempt})
        await asyncio.sleep(TEST_POLL_SECONDS)
    return JSONResponse({"messageId": message_id, "status": "pending", "attempt": None}, status_code=202)


@operation(
    "POST",
    "Rotate the endpoint's signing secret",
    auth=Auth.SERVER,
    body=RegenerateInput,
    body_required=False,
    replies=[Reply(200, "The new secret; the previous one signs too until it expires.", RotatedSecret)],
    errors=(404,),
)
async def regenerate_secret(request: Request) -> Response:
    admin = _admin(request)
    body = await _body(request, admin, optional=True)
    return JSONResponse(await run_in_threadpool(admin.regenerate_secret, _endpoint_id(request), body))


@operation(
    "POST",
    "Resend the endpoint's failed deliveries since a time",
    auth=Auth.SERVER,
    body=RecoverInput,
    replies=[Reply(202, "The messages enqueued again.", Recovered)],
    errors=(404, 503),
)
async def recover(request: Request) -> Response:
    admin = _admin(request)
    body = await _body(request, admin)
    ids = await run_in_threadpool(admin.recover, _endpoint_id(request), body)
    return JSONResponse({"replayed": len(ids), "messageIds": ids}, status_code=202)


@operation(
    "POST",
    "Deliver a webhook message again",
    auth=Auth.SERVER,
    replies=[Reply(202, "Enqueued again.", Queued)],
    errors=(404, 409, 503),
)
async def replay(request: Request) -> Response:
    admin = _admin(request)
    try:
        message_id = await run_in_threadpool(admin.replay, str(request.path_params["message_id"]))
    except ReplayRefused as exc:
        raise ApiError(409, "delivery_in_progress", str(exc)) from None
    return JSONResponse({"id": message_id, "status": "queued"}, status_code=202)


BASE = "/api/webhooks/configurations"

routes = [
    Route(BASE, configurations, methods=["GET", "POST"]),
    Route(BASE + "/{endpoint_id:str}", configuration, methods=["GET", "PUT", "PATCH", "DELETE"]),
    Route(BASE + "/{endpoint_id:str}/logs", logs, methods=["GET"]),
    Route(BASE + "/{endpoint_id:str}/test", test, methods=["POST"]),
    Route(BASE + "/{endpoint_id:str}/regenerate-secret", regenerate_secret, methods=["POST"]),
    Route(BASE + "/{endpoint_id:str}/recover", recover, methods=["POST"]),
    Route("/api/webhooks/deliveries/{message_id:str}/replay", replay, methods=["POST"]),
]
