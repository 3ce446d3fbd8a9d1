"""``/api/templates`` (server key): create, version, read, retire and preview templates.

``POST`` creates a template's first version (409 if it exists), ``PUT /{key}`` saves the
next version (``channel`` and ``locale`` in the body pick which) from the whole body and
``PATCH /{key}`` from the current version with a merge patch applied, ``GET /{key}`` shows the
current versions (``?channel=&locale=&version=`` for an older one), ``DELETE /{key}``
retires it (``?channel=&locale=`` narrows; queued messages still render their version;
409 ``template_in_use`` for a partial that current templates still include),
and ``POST /{key}/preview`` renders it with the given or the stored sample data.
A refused template answers 400 with ``details: [{part, line, message}]``, or 422 when it
is over what one template may cost to compile (``template_too_large``) or is a partial
that would make partials include each other (``partial_cycle``) or nest too deep
(``partials_too_deep``); a preview over the render budget (CPU time, output size) answers
422 ``render_limit_exceeded``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer import sms_segments
from producer.gateway import idempotency_header, pagination
from producer.gateway.auth import require_server, server_settings
from producer.gateway.bodies import parse, read_json_object
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Param, Reply, operation
from producer.gateway.openapi.views import Template, TemplateList, TemplatePreview, TemplateVersions
from producer.idempotent_create import create_once
from producer.merge_patch import PATCH_SEMANTICS, PUT_SEMANTICS, merge_patch, patch_model
from shared.config import Settings
from shared.db.session import session_scope
from shared.errors import NotFound, RenderError, RenderLimitExceeded, TemplateError
from shared.templates import engine, store
from shared.templates import messages as template_messages
from shared.templates.budget import RenderLimits

CHANNEL = Param("channel", "The template's channel: email, sms, in_app or webhook.")
LOCALE = Param("locale", "The locale, e.g. `fr-CA`; the default locale when absent.")
VERSION = Param(
    "version", "An older version to show (needs `channel`).", {"type": "string", "pattern": "^[0-9]+$"}
)


class PreviewInput(BaseModel):
    """``POST /api/templates/{key}/preview``: which version to render, and with what."""

    model_config = ConfigDict(extra="allow")

    channel: str | None = None
    locale: str | None = None
    #: The render context; the template's stored sample data when absent.
    data: dict[str, Any] | None = None


#: What a cursor of a template list holds: the last version's (key, channel, locale).
CURSOR = (pagination.text, pagination.text, pagination.text)


@operation(
    "GET",
    "The current version of every template, by key, channel and locale",
    auth=Auth.SERVER,
    params=pagination.PARAMS,
    replies=[Reply(200, "A page of current versions; `nextCursor` is null on the last page.", TemplateList)],
    errors=(422,),
)
async def list_templates(request: Request) -> JSONResponse:
    settings = server_settings(request)
    page = pagination.page_request(request, CURSOR)

    def read() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            rows, more = store.list_current_page(session, page.after, page.limit)
            return pagination.body([template_messages.view(row) for row in rows], more)

    return JSONResponse(await run_in_threadpool(read))


@operation(
    "POST",
    "Create a template (its first version)",
    auth=Auth.SERVER,
    body=store.TemplateInput,
    params=[idempotency_header.PARAM],
    replies=[Reply(201, "Version 1 of the template.", Template)],
    errors=(404, 409),
)
async def create_template(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.service.settings
    principal = require_server(request, settings)
    body = await read_json_object(request, settings.max_payload_bytes)
    key = idempotency_header.creation_key(request, principal.idempotency_scope, body)
    given = parse(store.TemplateInput, body)

    def create(session: Session) -> str:
        channel = store.normalize_channel(given.channel)
        if store.current(session, given.key, channel, given.locale or settings.template_default_locale):
            raise ApiError(
                409, "template_exists", f"template {given.key!r} exists; PUT /api/templates/{given.key}"
            )
        row = store.save(
            session, given, default_locale=settings.template_default_locale, limits=RenderLimits.of(settings)
        )
        return str(row.id)

    def show(session: Session, row_id: str) -> dict[str, Any]:
        return template_messages.view(store.by_id(session, int(row_id)))

    created = await run_in_threadpool(
        create_once, settings.database_url, key, "template", given, create, show
    )
    return idempotency_header.created_response(created)


@operation(
    "GET",
    "A template's current versions, or one older version",
    auth=Auth.SERVER,
    params=[CHANNEL, LOCALE, VERSION, *pagination.PARAMS],
    replies=[
        Reply(
            200,
            "A page of the current versions (one per channel and locale), or the one version asked "
            "for with `?version=`.",
            (TemplateVersions, Template),
        )
    ],
    errors=(400, 404, 422),
)
async def get_template(request: Request) -> JSONResponse:
    settings = server_settings(request)
    key = request.path_params["key"]
    query = request.query_params
    page = pagination.page_request(request, CURSOR)

    def read() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            if "version" in query:
                if not query["version"].isdigit() or "channel" not in query:
                    raise ApiError(400, "invalid_query", "?version=N needs a number and ?channel=")
                row = store.version(
                    session,
                    key,
                    store.normalize_channel(query["channel"]),
                    query.get("locale") or settings.template_default_locale,
                    int(query["version"]),
                )
                return template_messages.view(row)
            channel, locale = query.get("channel"), query.get("locale")
            rows, more = store.current_page(session, key, channel, locale, page.after, page.limit)
            if not rows and page.after is None:
                raise NotFound(f"no template {key!r}")
            return pagination.body([template_messages.view(row) for row in rows], more)

    return JSONResponse(await run_in_threadpool(read))


@operation(
    "PUT",
    "Save the next version of a template",
    auth=Auth.SERVER,
    body=store.TemplateInput,
    replies=[Reply(200, "The new version.", Template)],
    description=PUT_SEMANTICS + " `channel` and `locale` (the default locale when absent) name the "
    "template; the body is its next version whole: a part left out is not in it.",
)
async def put_template(request: Request) -> JSONResponse:
    settings = server_settings(request)
    body = await read_json_object(request, settings.max_payload_bytes)
    body.setdefault("key", request.path_params["key"])
    given = parse(store.TemplateInput, body)
    if given.key != request.path_params["key"]:
        raise ApiError(400, "key_mismatch", "the body's key differs from the path's")

    def write() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            return _save(session, given, settings)

    return JSONResponse(await run_in_threadpool(write))


def _save(session: Session, given: store.TemplateInput, settings: Settings) -> dict[str, Any]:
    """Save ``given`` as the next version of its template; the new version's view."""
    row = store.save(
        session, given, default_locale=settings.template_default_locale, limits=RenderLimits.of(settings)
    )
    return template_messages.view(row)


@operation(
    "PATCH",
    "Save the next version of a template from its current one and some changes",
    auth=Auth.SERVER,
    body=patch_model(store.TemplateInput),
    replies=[Reply(200, "The new version.", Template)],
    errors=(404,),
    description=PATCH_SEMANTICS + " `channel` (required) and `locale` (the default locale when "
    "absent) name the current version the patch applies to; the result is saved as the next "
    "version.",
)
async def patch_template(request: Request) -> JSONResponse:
    settings = server_settings(request)
    key = request.path_params["key"]
    patch = await read_json_object(request, settings.max_payload_bytes)
    channel, locale = patch.get("channel"), patch.get("locale") or settings.template_default_locale
    if not isinstance(channel, str) or not isinstance(locale, str):
        message = "channel (and locale, if given) name the version to change"
        raise ApiError(422, "validation_error", message, [{"field": "channel", "message": message}])

    def write() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            rows = store.current(session, key, channel, locale)
            if not rows:
                raise NotFound(f"no {channel} template {key!r} in locale {locale!r}")
            given = parse(store.TemplateInput, merge_patch(store.document(rows[0]), patch))
            if given.key != key:
                raise ApiError(400, "key_mismatch", "the body's key differs from the path's")
            return _save(session, given, settings)

    return JSONResponse(await run_in_threadpool(write))


@operation(
    "DELETE",
    "Retire a template (queued messages still render their version)",
    auth=Auth.SERVER,
    params=[CHANNEL, LOCALE],
    replies=[Reply(204, "Retired.", media_type=None)],
    errors=(400, 404, 409),
)
async def delete_template(request: Request) -> Response:
    settings = server_settings(request)
    key, query = request.path_params["key"], request.query_params

    def write() -> None:
        with session_scope(settings.database_url) as session:
            store.delete(session, key, query.get("channel"), query.get("locale"))

    await run_in_threadpool(write)
    return Response(status_code=204)


@operation(
    "POST",
    "Render a template with given or sample data",
    auth=Auth.SERVER,
    body=PreviewInput,
    replies=[Reply(200, "The rendered parts.", TemplatePreview)],
    errors=(404,),
)
async def preview_template(request: Request) -> JSONResponse:
    """Render the current version with ``data`` (or its sample data), strictly as a send would."""
    settings = server_settings(request)
    key = request.path_params["key"]
    given = parse(PreviewInput, await read_json_object(request, settings.max_payload_bytes))

    def render() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            rows = store.current(session, key, given.channel, given.locale)
            if not rows:
                raise NotFound(f"no template {key!r}")
            row = rows[0]
            data = given.data if given.data is not None else row.sample_data or {}
            compiled = store.load(session, row.key, row.channel, row.locale, row.version)
            rendered = refusing_render_errors(
                lambda: engine.render(
                    compiled,
                    data,
                    strict=settings.template_strict,
                    partials=store.current_partials(session),
                    limits=RenderLimits.of(settings),
                )
            )
            return {
                "key": row.key,
                "channel": row.channel,
                "locale": row.locale,
                "version": row.version,
                **with_segments(row.channel, rendered),
            }

    return JSONResponse(await run_in_threadpool(render))


def refusing_render_errors(render: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``render()``, its failures as the API's answers: over budget 422, a render error 400."""
    try:
        return render()
    except RenderLimitExceeded as exc:
        details = [{"part": None, "line": None, "message": str(exc)}]
        raise ApiError(422, "render_limit_exceeded", str(exc), details) from None
    except RenderError as exc:
        raise TemplateError(str(exc), [{"part": None, "line": None, "message": str(exc)}]) from None


def with_segments(channel: str, rendered: dict[str, Any]) -> dict[str, Any]:
    """An SMS preview says how many segments (each billed) its text takes."""
    if channel != "sms":
        return rendered
    return {**rendered, "segments": sms_segments.segments(str(rendered.get("sms") or "")).view()}


class DraftInput(store.TemplateInput):
    """``POST /api/templates/preview``: a template as it would be saved, and data to render it
    with (its ``sampleData`` when absent)."""

    data: dict[str, Any] | None = None


@operation(
    "POST",
    "Preview a template without saving it",
    auth=Auth.SERVER,
    body=DraftInput,
    replies=[Reply(200, "The rendered parts, as a send would render them.", TemplatePreview)],
    errors=(400, 422),
    description="Checks the template exactly as saving would (400 `invalid_template` with "
    "`details: [{part, line, message}]`) and renders it; nothing is stored. What an editor calls "
    "as its author types. An SMS answer has `segments: {encoding, units, count}`.",
)
async def preview_draft(request: Request) -> JSONResponse:
    settings = server_settings(request)
    given = parse(DraftInput, await read_json_object(request, settings.max_payload_bytes))

    def render() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            rendered = refusing_render_errors(
                lambda: store.render_draft(
                    session,
                    given,
                    given.data,
                    default_locale=settings.template_default_locale,
                    strict=settings.template_strict,
                    limits=RenderLimits.of(settings),
                )
            )
            channel = store.normalize_channel(given.channel)
            return {
                "key": given.key,
                "channel": channel,
                "locale": given.locale or settings.template_default_locale,
                "version": 0,
                **with_segments(channel, rendered),
            }

    return JSONResponse(await run_in_threadpool(render))


routes = [
    Route("/api/templates", list_templates, methods=["GET"]),
    Route("/api/templates", create_template, methods=["POST"]),
    Route("/api/templates/preview", preview_draft, methods=["POST"]),
    Route("/api/templates/{key:str}", get_template, methods=["GET"]),
    Route("/api/templates/{key:str}", put_template, methods=["PUT"]),
    Route("/api/templates/{key:str}", patch_template, methods=["PATCH"]),
    Route("/api/templates/{key:str}", delete_template, methods=["DELETE"]),
    Route("/api/templates/{key:str}/preview", preview_template, methods=["POST"]),
]
