"""``GET|PUT /api/notifications/preferences``: the calling user's notification preferences
(a user token, or a server key naming the user with ``X-User-Id``). The row is read and
written in a user-scoped transaction, so row-level security confines it to that user."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway.auth import require_user
from producer.gateway.bodies import parse, read_json_object
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import Preferences
from shared import preferences
from shared.config import Settings
from shared.db.models import UserNotificationPreference, utcnow
from shared.db.rls import user_scope


@operation(
    "GET",
    "The user's notification preferences",
    auth=Auth.USER,
    replies=[Reply(200, "The preferences (defaults if never set).", Preferences)],
)
async def get_preferences(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.service.settings
    user_id = require_user(request, settings).user_id or ""

    def read() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            return preferences.view(user_id, preferences.load(session, user_id))

    return JSONResponse(await run_in_threadpool(read))


@operation(
    "PUT",
    "Change the user's notification preferences",
    auth=Auth.USER,
    body=preferences.PreferencesUpdate,
    replies=[Reply(200, "The preferences after the change.", Preferences)],
)
async def put_preferences(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.service.settings
    user_id = require_user(request, settings).user_id or ""
    body = await read_json_object(request, settings.max_payload_bytes)
    update = parse(preferences.PreferencesUpdate, body)

    def write() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            row = session.get(UserNotificationPreference, user_id)
            if row is None:
                now = utcnow()
                row = UserNotificationPreference(
                    user_id=user_id,
                    email_enabled=True,
                    sms_enabled=True,
                    in_app_enabled=True,
                    webhook_enabled=True,
                    event_preferences={},
                    timezone="UTC",
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            preferences.apply(row, update)
            session.flush()
            return preferences.view(user_id, preferences.from_row(row))

    try:
        view = await run_in_threadpool(write)
    except IntegrityError:
        view = await run_in_threadpool(write)  # a concurrent first PUT created the row: apply on top
    return JSONResponse(view)


routes = [
    Route("/api/notifications/preferences", get_preferences, methods=["GET"]),
    Route("/api/notifications/preferences", put_preferences, methods=["PUT"]),
]
