"""The devices push notifications reach (:mod:`shared.push_targets`).

- ``GET /api/push/vapid-public-key`` (public): the key a page passes to
  ``pushManager.subscribe`` as ``applicationServerKey``.
- ``GET|POST /api/notifications/devices``, ``DELETE /api/notifications/devices/{id}``: the
  caller's own devices (a user token; the ``/inbox`` page and mobile apps register here).
- ``GET|POST /api/users/{userId}/devices``, ``DELETE …/devices/{id}``: any user's (a server
  key; the host application's backend registers tokens its apps send it).

A POST takes a browser's ``PushSubscription`` (``endpoint`` + ``keys``) or an app's token
(``platform`` + ``token``). A subscription's endpoint is checked against the same network
policy as webhook URLs: it is a URL a user chose, and the push worker will POST to it.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer.gateway import pagination
from producer.gateway.auth import app_settings, require_server, require_user
from producer.gateway.bodies import parse, read_json_object
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import Device, DeviceList, VapidKey
from shared import netguard, push_targets
from shared.config import Settings
from shared.db.rls import system_scope
from shared.errors import NotFound, ValidationError

#: What a cursor of a device list holds: the last device's (createdAt, id).
CURSOR = (pagination.moment, pagination.text)


def _given(
    body: dict[str, Any], settings: Settings
) -> push_targets.SubscriptionInput | push_targets.DeviceInput:
    if "endpoint" not in body:
        return parse(push_targets.DeviceInput, body)
    subscription = parse(push_targets.SubscriptionInput, body)
    try:
        netguard.check_url(subscription.endpoint, settings.address_policy)
    except netguard.AddressRefused as exc:
        message = f"endpoint refused: {exc}"
        raise ValidationError(message, [{"field": "endpoint", "message": message}]) from None
    return subscription


async def _register(request: Request, settings: Settings, user_id: str) -> JSONResponse:
    given = _given(await read_json_object(request, settings.max_payload_bytes), settings)

    def write() -> dict[str, Any]:
        # The system scope: the device may move from another user (see shared.push_targets).
        with system_scope(settings.database_url) as session:
            return push_targets.view(push_targets.register(session, user_id, given))

    return JSONResponse(await run_in_threadpool(write), status_code=201)


async def _list(request: Request, settings: Settings, user_id: str) -> JSONResponse:
    page = pagination.page_request(request, CURSOR)

    def read() -> dict[str, Any]:
        with system_scope(settings.database_url) as session:
            rows, more = push_targets.owned_page(session, user_id, page.after, page.limit)
            return pagination.body([push_targets.view(row) for row in rows], more)

    return JSONResponse(await run_in_threadpool(read))


async def _remove(settings: Settings, user_id: str, device_id: str) -> Response:
    def write() -> None:
        with system_scope(settings.database_url) as session:
            push_targets.remove(session, user_id, device_id)

    await run_in_threadpool(write)
    return Response(status_code=204)


@operation(
    "GET",
    "The VAPID public key for browser push subscriptions",
    auth=Auth.PUBLIC,
    replies=[Reply(200, "Pass `publicKey` to `pushManager.subscribe` as `applicationServerKey`.", VapidKey)],
    errors=(404,),
)
async def vapid_public_key(request: Request) -> JSONResponse:
    key = app_settings(request).push.vapid_public_key()
    if key is None:
        raise ApiError(404, "not_configured", "web push is not configured (VAPID_PRIVATE_KEY)")
    return JSONResponse({"publicKey": key}, headers={"Cache-Control": "public, max-age=300"})


DEVICE_BODY = (
    "A browser's `PushSubscription` (`endpoint`, `keys.p256dh`, `keys.auth`) or an app's token "
    "(`platform`: android|ios, `token`, optional `service`: fcm|apns, `appId`)."
)


@operation(
    "GET",
    "The caller's devices",
    auth=Auth.USER,
    params=pagination.PARAMS,
    replies=[Reply(200, "Oldest first; tokens shown masked.", DeviceList)],
)
async def my_devices(request: Request) -> JSONResponse:
    settings = app_settings(request)
    user_id = str(require_user(request, settings).user_id)
    return await _list(request, settings, user_id)


@operation(
    "POST",
    "Register a device of the caller for push",
    auth=Auth.USER,
    body=push_targets.SubscriptionInput,
    replies=[Reply(201, "Saved (registered again: refreshed, and moved to this user).", Device)],
    description=DEVICE_BODY,
)
async def register_my_device(request: Request) -> JSONResponse:
    settings = app_settings(request)
    user_id = str(require_user(request, settings).user_id)
    return await _register(request, settings, user_id)


@operation(
    "DELETE", "Forget a device of the caller", auth=Auth.USER, replies=[Reply(204, "Removed.")], errors=(404,)
)
async def remove_my_device(request: Request) -> Response:
    settings = app_settings(request)
    user_id = str(require_user(request, settings).user_id)
    return await _remove(settings, user_id, request.path_params["device_id"])


def _path_user(request: Request, settings: Settings) -> str:
    principal = require_server(request, settings)
    user_id: str = request.path_params["user_id"]
    if principal.user_id is not None and principal.user_id != user_id:
        raise NotFound(f"no user {user_id}")
    return user_id


@operation(
    "GET",
    "A user's devices",
    auth=Auth.SERVER,
    params=pagination.PARAMS,
    replies=[Reply(200, "Oldest first; tokens shown masked.", DeviceList)],
)
async def user_devices(request: Request) -> JSONResponse:
    settings = app_settings(request)
    return await _list(request, settings, _path_user(request, settings))


@operation(
    "POST",
    "Register a device of a user for push",
    auth=Auth.SERVER,
    body=push_targets.DeviceInput,
    replies=[Reply(201, "Saved (registered again: refreshed, and moved to this user).", Device)],
    description=DEVICE_BODY,
)
async def register_user_device(request: Request) -> JSONResponse:
    settings = app_settings(request)
    return await _register(request, settings, _path_user(request, settings))


@operation(
    "DELETE", "Forget a device of a user", auth=Auth.SERVER, replies=[Reply(204, "Removed.")], errors=(404,)
)
async def remove_user_device(request: Request) -> Response:
    settings = app_settings(request)
    return await _remove(settings, _path_user(request, settings), request.path_params["device_id"])


routes = [
    Route("/api/push/vapid-public-key", vapid_public_key, methods=["GET"]),
    Route("/api/notifications/devices", my_devices, methods=["GET"]),
    Route("/api/notifications/devices", register_my_device, methods=["POST"]),
    Route("/api/notifications/devices/{device_id:str}", remove_my_device, methods=["DELETE"]),
    Route("/api/users/{user_id:str}/devices", user_devices, methods=["GET"]),
    Route("/api/users/{user_id:str}/devices", register_user_device, methods=["POST"]),
    Route("/api/users/{user_id:str}/devices/{device_id:str}", remove_user_device, methods=["DELETE"]),
]
