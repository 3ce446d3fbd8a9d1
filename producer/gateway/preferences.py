"""``GET|PUT|PATCH /api/notifications/preferences``: the calling user's notification
preferences (a user token, or a server key naming the user with ``X-User-Id``); PUT replaces
the whole document, PATCH merges a JSON merge patch into it. The row is read and
written in a user-scoped transaction, so row-level security confines it to that user."""

from __future__ import annotations

from collections.abc import Callable
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
from producer.merge_patch import PATCH_SEMANTICS, PUT_SEMANTICS, merge_patch, patch_model
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
    "Replace the user's notification preferences",
    auth=Auth.USER,
    body=preferences.PreferencesInput,
    replies=[Reply(200, "The preferences as saved.", Preferences)],
    description=PUT_SEMANTICS + " The defaults are those of a user who never set any: every "
    "channel on, no per-event choices, no quiet hours, UTC.",
)
async def put_preferences(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    given = parse(preferences.PreferencesInput, await read_json_object(request, settings.max_payload_bytes))
    return JSONResponse(await _save(settings, user_id, lambda _current: given))


@operation(
    "PATCH",
    "Change some of the user's notification preferences",
    auth=Auth.USER,
    body=patch_model(preferences.PreferencesInput),
    replies=[Reply(200, "The preferences as saved.", Preferences)],
    description=PATCH_SEMANTICS + " `eventPreferences` merges by event type and channel: "
    '`{"eventPreferences": {"order.shipped": {"sms": false}}}` changes that one switch, `null` '
    "for an event type forgets its choices; `quietHours: null` turns quiet hours off.",
)
async def patch_preferences(request: Request) -> JSONResponse:
    settings, user_id = _user(request)
    patch = await read_json_object(request, settings.max_payload_bytes)

    def patched(current: preferences.Preferences) -> preferences.PreferencesInput:
        merged = merge_patch(preferences.document(current), patch)
        return parse(preferences.PreferencesInput, merged)

    return JSONResponse(await _save(settings, user_id, patched))


def _user(request: Request) -> tuple[Settings, str]:
    settings: Settings = request.app.state.service.settings
    return settings, require_user(request, settings).user_id or ""


async def _save(
    settings: Settings,
    user_id: str,
    document: Callable[[preferences.Preferences], preferences.PreferencesInput],
) -> dict[str, Any]:
    """Save the preferences ``document`` makes of the current ones, in one transaction."""

    def write() -> dict[str, Any]:
        with user_scope(settings.database_url, user_id) as session:
            row = session.get(UserNotificationPreference, user_id, with_for_update=True)
            given = document(preferences.from_row(row))
            if row is None:
                row = UserNotificationPreference(user_id=user_id, created_at=utcnow())
                session.add(row)
            preferences.replace(row, given)
            session.flush()
            return preferences.view(user_id, preferences.from_row(row))

    try:
        return await run_in_threadpool(write)
    except IntegrityError:
        return await run_in_threadpool(write)  # a concurrent first save created the row: apply on top


routes = [
    Route("/api/notifications/preferences", get_preferences, methods=["GET"]),
    Route("/api/notifications/preferences", put_preferences, methods=["PUT"]),
    Route("/api/notifications/preferences", patch_preferences, methods=["PATCH"]),
]
