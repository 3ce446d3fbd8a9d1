"""The OpenAPI 3.1 document of the gateway, built from the application's own routes.

Each route's endpoint carries its :class:`~.operation.Operation` per method; request and
response schemas come from pydantic models (``models_json_schema``), gathered once under
``components/schemas``. Errors all share the ``Error`` schema (README, "HTTP API"); which
statuses an operation documents follows from who may call it, whether it takes a body, and
what it adds itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.routing import BaseRoute, Route

from producer.gateway.openapi.operation import Auth, Operation, Param, Reply, operations_of
from producer.gateway.openapi.views import Error

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"

#: Starlette answers HEAD on every GET route by itself; it is not an operation of ours.
IMPLICIT_METHODS = frozenset({"HEAD"})


class UndocumentedRoute(Exception):
    """A served route method without a description, or a description of nothing served."""


#: Every error status an operation may document, with the meaning the API gives it.
ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "Malformed request: invalid JSON (not UTF-8, a key named twice in an object, a lone "
        "surrogate or NUL in a string), a body that is not an object, or no user named (or an "
        "`X-User-Id` over 255 characters).",
    ),
    401: ("Unauthorized", "No credential, or one that is unknown or expired."),
    403: (
        "Forbidden",
        "The credential is of the wrong kind for this endpoint (on a public endpoint: the "
        "request's signature or link is not one of ours).",
    ),
    404: ("NotFound", "Nothing with that id."),
    408: (
        "RequestTimeout",
        "The request's headers or body did not arrive in time (`GATEWAY_HEADER_TIMEOUT`, "
        "`GATEWAY_BODY_TIMEOUT`); the connection is closed.",
    ),
    409: (
        "Conflict",
        "Refused by the current state (already exists, delivery in progress, an idempotency key "
        "used for another request).",
    ),
    410: ("Gone", "A link that was ours has expired."),
    413: ("PayloadTooLarge", "The request body or the message is over the size limit."),
    415: (
        "UnsupportedMediaType",
        "The body is not declared as `application/json` (or `application/*+json`) with no charset "
        "or `charset=utf-8` (a provider's callback: as the form it is).",
    ),
    422: ("UnprocessableEntity", "A field or query parameter is invalid; `details` says which."),
    429: ("TooManyRequests", "Over a rate or connection limit; retry after `Retry-After` seconds."),
    503: (
        "ServiceUnavailable",
        "A dependency (the broker or the database) is unavailable; retry after `Retry-After`.",
    ),
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "The Bearer challenge.", "schema": {"type": "string"}}},
    429: RETRY_AFTER,
    503: RETRY_AFTER,
}

SECURITY_SCHEMES = {
    "serverKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A server key from `API_KEYS`: `Authorization: Bearer <key>`.",
    },
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user token: JWT HS256 signed with `USER_TOKEN_SECRET`, `sub` = user id, `exp` "
        "required.",
    },
    "userTokenQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
        "description": "A user token in the URL, for `EventSource`, which cannot send headers. Never a "
        "server key.",
    },
}

SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.PUBLIC: [],
    Auth.SERVER: [{"serverKey": []}],
    Auth.USER: [{"userToken": []}, {"serverKey": []}],
    Auth.USER_OR_QUERY_TOKEN: [{"userToken": []}, {"serverKey": []}, {"userTokenQuery": []}],
    Auth.SERVER_OR_USER: [{"serverKey": []}, {"userToken": []}],
}

ACTING_USER = Param(
    "X-User-Id",
    "With a server key: the user to act for. Ignored with a user token.",
    {"type": "string", "minLength": 1, "maxLength": 255},
    location="header",
)
#: The operations that may act for a user named with ``X-User-Id``.
ACTING_FOR_USERS = frozenset({Auth.USER, Auth.USER_OR_QUERY_TOKEN, Auth.SERVER_OR_USER})


def build(routes: Iterable[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    """The document of every operation ``routes`` serve; :class:`UndocumentedRoute` if one
    is served without a description (or described but not served)."""
    served = list(_operations(routes))
    schemas, refs = _schemas(served)
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route, op in served:
        operation_id = f"{op.method.lower()}_{route.name}"
        if operation_id in operation_ids:
            raise UndocumentedRoute(f"two operations would be called {operation_id}")
        operation_ids.add(operation_id)
        paths.setdefault(route.path_format, {})[op.method.lower()] = _operation(route, op, operation_id, refs)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Send email, SMS, webhooks, in-app, push (web, FCM, APNs) and chat (Slack, Teams) "
            "notifications; manage templates, "
            "rules, webhook endpoints and users' inboxes. Errors are always "
            '`{"error": {"code", "message", "details"}}`.',
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                name: _error_response(status, description) for status, (name, description) in ERRORS.items()
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def served_operations(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """``(path, METHOD)`` of everything ``routes`` answer, in OpenAPI path syntax."""
    return {
        (route.path_format, method)
        for route in routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - IMPLICIT_METHODS
    }


def _operations(routes: Iterable[BaseRoute]) -> Iterable[tuple[Route, Operation]]:
    for route in routes:
        if not isinstance(route, Route):
            raise UndocumentedRoute(f"cannot describe {route!r}: only plain routes are documented")
        described = operations_of(route.endpoint)
        methods = (route.methods or set()) - IMPLICIT_METHODS
        for method in sorted(methods):
            if method not in described:
                raise UndocumentedRoute(f"{method} {route.path} has no @operation description")
            yield route, described[method]
        stray = set(described) - methods
        if stray:
            raise UndocumentedRoute(f"{route.path} describes {sorted(stray)} but does not serve them")


def _schemas(
    served: Sequence[tuple[Route, Operation]],
) -> tuple[dict[str, Any], dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Error, "serialization"): None}
    for _, op in served:
        wanted.update(dict.fromkeys((model, "validation") for model in op.body))
        wanted.update(dict.fromkeys((m, "serialization") for r in op.replies for m in r.models))
    refs, definitions = models_json_schema(list(wanted), ref_template=REF_TEMPLATE)
    by_model = {(model, mode): dict(refs[(model, mode)]) for model, mode in wanted}
    return dict(definitions.get("$defs", {})), by_model


def _operation(
    route: Route,
    op: Operation,
    operation_id: str,
    refs: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]],
) -> dict[str, Any]:
    params = [_path_param(name) for name in route.param_convertors]
    extra = [ACTING_USER] if op.auth in ACTING_FOR_USERS else []
    params += [_param(p) for p in (*op.params, *extra)]
    document: dict[str, Any] = {
        "operationId": operation_id,
        "summary": op.summary,
        "tags": [_tag(route.path_format)],
        "security": SECURITY[op.auth],
        "responses": _responses(op, refs, takes_parameters=bool(route.param_convertors or op.params)),
    }
    if op.description:
        document["description"] = op.description
    if params:
        document["parameters"] = params
    if op.body:
        bodies = [refs[(model, "validation")] for model in op.body]
        schema = bodies[0] if len(bodies) == 1 else {"anyOf": bodies}
        document["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schema}},
        }
    return document


def _responses(
    op: Operation,
    refs: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]],
    *,
    takes_parameters: bool,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for reply in op.replies:
        answer: dict[str, Any] = {"description": reply.description}
        if reply.media_type is not None:
            schema = _reply_schema(reply, refs)
            answer["content"] = {reply.media_type: {"schema": schema}}
        responses[str(reply.status)] = answer
    for status in sorted(_error_statuses(op, takes_parameters)):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    return responses


def _reply_schema(
    reply: Reply, refs: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]]
) -> dict[str, Any]:
    if reply.models:
        schemas = [refs[(model, "serialization")] for model in reply.models]
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"type": "object"} if "json" in str(reply.media_type) else {"type": "string"}


def _error_statuses(op: Operation, takes_parameters: bool) -> set[int]:
    statuses = set(op.errors)
    if takes_parameters:
        statuses.add(422)  # a parameter the database cannot hold (too long, a NUL character)
    # Every authenticated request is charged to a rate-limit group (producer/gateway/ratelimit.py)
    # and may meet a database outage (503 database_unavailable, producer/gateway/errors.py).
    if op.auth is Auth.SERVER:
        statuses |= {401, 403, 429, 503}
    elif op.auth in ACTING_FOR_USERS:
        statuses |= {400, 401, 429, 503}  # 400: no user named, or an X-User-Id too long
    if op.body:
        statuses |= {400, 408, 413, 415, 422}  # 408: the body's deadline (producer/gateway/bodies.py)
    return statuses


def _error_response(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=Error.__name__)}}},
    }
    if status in ERROR_HEADERS:
        response["headers"] = ERROR_HEADERS[status]
    return response


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _param(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.location,
        "required": param.required,
        "description": param.description,
        "schema": dict(param.schema),
    }


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    return parts[1] if parts[0] == "api" and len(parts) > 1 else "service"
