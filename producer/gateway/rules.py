"""``/api/rules`` (server key): the notification rules events are matched against."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer.gateway import idempotency_header, pagination
from producer.gateway.auth import require_server, server_settings
from producer.gateway.bodies import parse, read_json_object
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import Rule, RuleList
from producer.idempotent_create import create_once
from producer.merge_patch import PATCH_SEMANTICS, PUT_SEMANTICS, merge_patch, patch_model
from shared.config import Settings
from shared.db.session import session_scope
from shared.events import rules

#: What a cursor of the rules holds: the last rule's (createdAt, id).
CURSOR = (pagination.moment, pagination.text)


@operation(
    "GET",
    "The notification rules, oldest first",
    auth=Auth.SERVER,
    params=pagination.PARAMS,
    replies=[Reply(200, "A page of rules; `nextCursor` is null on the last page.", RuleList)],
    errors=(422,),
)
async def list_rules(request: Request) -> JSONResponse:
    settings = server_settings(request)
    page = pagination.page_request(request, CURSOR)

    def read() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            rows, more = rules.list_page(session, page.after, page.limit)
            return pagination.body([rules.view(row) for row in rows], more)

    return JSONResponse(await run_in_threadpool(read))


@operation(
    "POST",
    "Create a notification rule",
    auth=Auth.SERVER,
    body=rules.RuleInput,
    params=[idempotency_header.PARAM],
    replies=[Reply(201, "The new rule.", Rule)],
    errors=(404, 409),
)
async def create_rule(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.service.settings
    principal = require_server(request, settings)
    body = await read_json_object(request, settings.max_payload_bytes)
    key = idempotency_header.creation_key(request, principal.idempotency_scope, body)
    given = parse(rules.RuleInput, body)

    def create(session: Session) -> str:
        return rules.create(
            session,
            given,
            default_locale=settings.template_default_locale,
            encryption_keys=settings.webhooks.encryption_keys,
        ).id

    def show(session: Session, rule_id: str) -> dict[str, Any]:
        return rules.view(rules.get(session, rule_id))

    created = await run_in_threadpool(create_once, settings.database_url, key, "rule", given, create, show)
    return idempotency_header.created_response(created)


@operation("GET", "A rule", auth=Auth.SERVER, replies=[Reply(200, "The rule.", Rule)], errors=(404,))
async def get_rule(request: Request) -> JSONResponse:
    settings = server_settings(request)

    def read() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            return rules.view(rules.get(session, request.path_params["rule_id"]))

    return JSONResponse(await run_in_threadpool(read))


@operation(
    "PUT",
    "Replace a rule",
    auth=Auth.SERVER,
    body=rules.RuleInput,
    replies=[Reply(200, "The rule as saved.", Rule)],
    errors=(404,),
    description=PUT_SEMANTICS + " Left out, `conditions` is no conditions (every event of the type "
    "matches), `priority` 0, `critical` false, `transactional` false, `delayMs` 0 and `active` true.",
)
async def put_rule(request: Request) -> JSONResponse:
    settings = server_settings(request)
    given = parse(rules.RuleInput, await read_json_object(request, settings.max_payload_bytes))

    def write() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            row = rules.get(session, request.path_params["rule_id"], for_update=True)
            rules.replace(
                session,
                row,
                given,
                default_locale=settings.template_default_locale,
                encryption_keys=settings.webhooks.encryption_keys,
            )
            return rules.view(row)

    return JSONResponse(await run_in_threadpool(write))


@operation(
    "PATCH",
    "Change some fields of a rule",
    auth=Auth.SERVER,
    body=patch_model(rules.RuleInput),
    replies=[Reply(200, "The rule as saved.", Rule)],
    errors=(404,),
    description=PATCH_SEMANTICS,
)
async def patch_rule(request: Request) -> JSONResponse:
    settings = server_settings(request)
    patch = await read_json_object(request, settings.max_payload_bytes)
    rule_id = request.path_params["rule_id"]

    def write() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            row = rules.get(session, rule_id, for_update=True)
            given = parse(rules.RuleInput, merge_patch(rules.document(row), patch))
            rules.replace(
                session,
                row,
                given,
                default_locale=settings.template_default_locale,
                encryption_keys=settings.webhooks.encryption_keys,
            )
            return rules.view(row)

    return JSONResponse(await run_in_threadpool(write))


@operation(
    "DELETE",
    "Delete a rule",
    auth=Auth.SERVER,
    replies=[Reply(204, "Deleted.", media_type=None)],
    errors=(404,),
)
async def delete_rule(request: Request) -> Response:
    settings = server_settings(request)

    def write() -> None:
        with session_scope(settings.database_url) as session:
            rules.delete(session, request.path_params["rule_id"])

    await run_in_threadpool(write)
    return Response(status_code=204)


routes = [
    Route("/api/rules", list_rules, methods=["GET"]),
    Route("/api/rules", create_rule, methods=["POST"]),
    Route("/api/rules/{rule_id:str}", get_rule, methods=["GET"]),
    Route("/api/rules/{rule_id:str}", put_rule, methods=["PUT"]),
    Route("/api/rules/{rule_id:str}", patch_rule, methods=["PATCH"]),
    Route("/api/rules/{rule_id:str}", delete_rule, methods=["DELETE"]),
]
