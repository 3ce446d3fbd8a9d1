"""``/api/rules`` (server key): the notification rules events are matched against."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer.gateway.auth import server_settings
from producer.gateway.bodies import parse, read_json_object
from shared.db.session import session_scope
from shared.events import rules


async def list_rules(request: Request) -> JSONResponse:
    settings = server_settings(request)

    def read() -> list[dict[str, Any]]:
        with session_scope(settings.database_url) as session:
            return [rules.view(row) for row in rules.list_all(session)]

    return JSONResponse({"rules": await run_in_threadpool(read)})


async def create_rule(request: Request) -> JSONResponse:
    settings = server_settings(request)
    given = parse(rules.RuleInput, await read_json_object(request, settings.max_payload_bytes))

    def write() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            return rules.view(rules.create(session, given, default_locale=settings.template_default_locale))

    return JSONResponse(await run_in_threadpool(write), status_code=201)


async def get_rule(request: Request) -> JSONResponse:
    settings = server_settings(request)

    def read() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            return rules.view(rules.get(session, request.path_params["rule_id"]))

    return JSONResponse(await run_in_threadpool(read))


async def put_rule(request: Request) -> JSONResponse:
    settings = server_settings(request)
    given = parse(rules.RuleInput, await read_json_object(request, settings.max_payload_bytes))

    def write() -> dict[str, Any]:
        with session_scope(settings.database_url) as session:
            row = rules.replace(
                session,
                request.path_params["rule_id"],
                given,
                default_locale=settings.template_default_locale,
            )
            return rules.view(row)

    return JSONResponse(await run_in_threadpool(write))


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
    Route("/api/rules/{rule_id:str}", delete_rule, methods=["DELETE"]),
]
