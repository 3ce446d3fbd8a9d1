"""``POST /api/events`` (server key): queue an event for rule processing (202 + id);
``GET /api/events/{id}``: what it produced. ``PUT|GET /api/users/{id}/contacts``: where a
user is reached by event rules."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.events import EventNotificationService
from producer.gateway.auth import server_settings
from producer.gateway.bodies import parse, read_json_object
from shared.db.rls import user_scope
from shared.errors import NotFound
from shared.events import contacts


def _events(request: Request) -> EventNotificationService:
    return EventNotificationService(server_settings(request))


async def post_event(request: Request) -> JSONResponse:
    service = _events(request)
    body = await read_json_object(request, service.settings.max_payload_bytes)
    event_id = await run_in_threadpool(service.submit, body)
    return JSONResponse({"id": event_id, "status": "queued"}, status_code=202)


async def get_event(request: Request) -> JSONResponse:
    service = _events(request)
    return JSONResponse(await run_in_threadpool(service.get_event, request.path_params["event_id"]))


async def put_contacts(request: Request) -> JSONResponse:
    settings = server_settings(request)
    user_id = request.path_params["user_id"]
    body = await read_json_object(request, settings.max_payload_bytes)
    given = parse(contacts.ContactInput, body)

    def write() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            return contacts.view(contacts.put(session, user_id, given))

    return JSONResponse(await run_in_threadpool(write))


async def get_contacts(request: Request) -> JSONResponse:
    settings = server_settings(request)
    user_id = request.path_params["user_id"]

    def read() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            row = contacts.get(session, user_id)
            if row is None:
                raise NotFound(f"no contacts for user {user_id}")
            return contacts.view(row)

    return JSONResponse(await run_in_threadpool(read))


routes = [
    Route("/api/events", post_event, methods=["POST"]),
    Route("/api/events/{event_id:str}", get_event, methods=["GET"]),
    Route("/api/users/{user_id:str}/contacts", put_contacts, methods=["PUT"]),
    Route("/api/users/{user_id:str}/contacts", get_contacts, methods=["GET"]),
]
