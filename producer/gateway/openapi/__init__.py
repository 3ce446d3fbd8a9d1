"""``GET /openapi.json`` (public, like ``/healthz``): the gateway's OpenAPI 3.1 document, and
``GET /docs``, the interactive documentation that renders it (:mod:`.docs`).

Endpoints describe themselves with :func:`operation`; :func:`build` assembles the document
from the routes the application serves, so a route without a description stops the
application at start rather than going missing from the document.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway.openapi import docs
from producer.gateway.openapi.document import UndocumentedRoute, build, served_operations
from producer.gateway.openapi.operation import Auth, Operation, Param, Reply, operation

__all__ = [
    "Auth",
    "Operation",
    "Param",
    "Reply",
    "UndocumentedRoute",
    "build",
    "operation",
    "routes",
    "served_operations",
]


@operation(
    "GET",
    "This document",
    auth=Auth.PUBLIC,
    replies=[Reply(200, "The OpenAPI 3.1 document of this gateway.", media_type="application/json")],
)
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


routes = [Route("/openapi.json", openapi_document, methods=["GET"]), *docs.routes]
