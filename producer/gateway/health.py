"""``/healthz`` (the process answers) and ``/readyz`` (database, broker and Redis reachable)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import Health, Readiness
from shared.config import Settings
from shared.health import readiness


@operation("GET", "Liveness: the process answers", auth=Auth.PUBLIC, replies=[Reply(200, "Alive.", Health)])
async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@operation(
    "GET",
    "Readiness: database, broker and Redis reachable",
    auth=Auth.PUBLIC,
    replies=[
        Reply(200, "Every dependency answers.", Readiness),
        Reply(503, "A dependency does not answer; `checks` says which.", Readiness),
    ],
)
async def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.service.settings
    checks = await run_in_threadpool(readiness, settings)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
