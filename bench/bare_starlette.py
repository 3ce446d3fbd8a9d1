"""A bare Starlette endpoint on the gateway's server settings: what the framework and the
server cost with nothing of ours (row L3). Bench-only.

uvicorn --factory bench.bare_starlette:build
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def build() -> Starlette:
    async def send(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"id": "0", "status": "queued"}, status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/api/messages/webhook", send, methods=["POST"]), Route("/healthz", healthz)]
    )
