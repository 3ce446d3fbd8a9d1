"""``POST /api/events`` (server key): queue an event for rule processing (202 + id);
``GET /api/events/{id}``: what it produced. ``PUT|PATCH|GET /api/users/{id}/contacts``:
where a user is reached by event rules.

A server key naming a user with ``X-User-Id`` reads and writes only that user's events and
contacts: another user's answer 404, as if they did not exist."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.events import EventNotificationService, EventRequest
from producer.gateway.auth import require_server
from producer.gateway.bodies import parse, read_json_object
from producer.gateway.idempotency_header import with_header_key
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import Contacts, Event, Queued
from producer.merge_patch import PATCH_SEMANTICS, PUT_SEMANTICS, merge_patch, patch_model
from shared.config import Settings
from shared.db.rls import user_scope
from shared.errors import NotFound
from shared.events import contacts


@operation(
    "POST",
    "Queue an event for the notification rules",
    auth=Auth.SERVER,
    body=EventRequest,
    replies=[Reply(202, "Recorded and enqueued; `GET /api/events/{id}` shows what it produced.", Queued)],
    errors=(409, 503),
)
async def post_event(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.service.settings
    principal = require_server(request, settings)
    service = EventNotificationService(settings)
    body = with_header_key(request, await read_json_object(request, settings.max_payload_bytes))
    event_id = await service.asubmit(body, idempotency_scope=principal.idempotency_scope)
    return JSONResponse({"id": event_id, "status": "queued"}, status_code=202)


def _server_acting_for(request: Request) -> tuple[Settings, str | None]:
    """The settings, once the caller holds a server key, and the user it names, if any."""
    settings: Settings = request.app.state.service.settings
    return settings, require_server(request, settings).user_id


@operation(
    "GET",
    "An event and the messages it produced",
    auth=Auth.SERVER,
    replies=[Reply(200, "The event as recorded.", Event)],
    errors=(404,),
)
async def get_event(request: Request) -> JSONResponse:
    settings, acting_for = _server_acting_for(request)
    service, event_id = EventNotificationService(settings), request.path_params["event_id"]
    event = await run_in_threadpool(lambda: service.get_event(event_id, for_user=acting_for))
    # Row-level security hides another user's event on PostgreSQL only; SQLite has none.
    if acting_for is not None and event["userId"] != acting_for:
        raise NotFound(f"no event with id {event_id}")
    return JSONResponse(event)


def _contacts_owner(request: Request) -> tuple[Settings, str]:
    """The settings and the user of the path, unless the key acts for someone else: then
    the path's user is not found, as with any user it cannot see."""
    settings, acting_for = _server_acting_for(request)
    user_id: str = request.path_params["user_id"]
    if acting_for is not None and acting_for != user_id:
        raise NotFound(f"no contacts for user {user_id}")
    return settings, user_id


@operation(
    "PUT",
    "Set where a user is reached by event rules",
    auth=Auth.SERVER,
    body=contacts.ContactInput,
    replies=[Reply(200, "The user's contacts (absent fields cleared).", Contacts)],
    description=PUT_SEMANTICS,
)
async def put_contacts(request: Request) -> JSONResponse:
    settings, user_id = _contacts_owner(request)
    body = await read_json_object(request, settings.max_payload_bytes)
    given = parse(contacts.ContactInput, body)

    def write() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            row = contacts.put(session, user_id, given, encryption_keys=keys)
            return contacts.view(row, keys)

    keys = settings.webhooks.encryption_keys
    return JSONResponse(await run_in_threadpool(write))


@operation(
    "PATCH",
    "Change some of where a user is reached",
    auth=Auth.SERVER,
    body=patch_model(contacts.ContactInput),
    replies=[Reply(200, "The user's contacts.", Contacts)],
    description=PATCH_SEMANTICS + " A user without contacts yet starts from none.",
)
async def patch_contacts(request: Request) -> JSONResponse:
    settings, user_id = _contacts_owner(request)
    patch = await read_json_object(request, settings.max_payload_bytes)

    def write() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            current = contacts.document(contacts.get(session, user_id, for_update=True), keys)
            given = parse(contacts.ContactInput, merge_patch(current, patch))
            return contacts.view(contacts.put(session, user_id, given, encryption_keys=keys), keys)

    keys = settings.webhooks.encryption_keys
    return JSONResponse(await run_in_threadpool(write))


@operation(
    "GET",
    "Where a user is reached by event rules",
    auth=Auth.SERVER,
    replies=[Reply(200, "The user's contacts.", Contacts)],
    errors=(404,),
)
async def get_contacts(request: Request) -> JSONResponse:
    settings, user_id = _contacts_owner(request)

    def read() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            row = contacts.get(session, user_id)
            if row is None:
                raise NotFound(f"no contacts for user {user_id}")
            return contacts.view(row, settings.webhooks.encryption_keys)

    return JSONResponse(await run_in_threadpool(read))


routes = [
    Route("/api/events", post_event, methods=["POST"]),
    Route("/api/events/{event_id:str}", get_event, methods=["GET"]),
    Route("/api/users/{user_id:str}/contacts", put_contacts, methods=["PUT"]),
    Route("/api/users/{user_id:str}/contacts", patch_contacts, methods=["PATCH"]),
    Route("/api/users/{user_id:str}/contacts", get_contacts, methods=["GET"]),
]
