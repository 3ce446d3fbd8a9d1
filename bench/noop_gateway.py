"""The gateway's framework ceiling: the same send endpoint with the same auth, rate limit,
body reading and validation, but no insert and no publish. Bench-only, so production code
carries no switch for it.

uvicorn --factory bench.noop_gateway:build
"""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.gateway.auth import require_server
from producer.gateway.bodies import read_json_object
from producer.gateway.errors import HANDLERS
from producer.gateway.ratelimit import GatewayLimits, RateLimitHeaders
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import get_settings, set_settings


def build() -> Starlette:
    settings = get_settings()
    set_settings(settings)
    service = NotificationService(settings)

    async def send(request: Request) -> JSONResponse:
        require_server(request, settings)
        body = await read_json_object(request, settings.max_payload_bytes)
        await service.avalidate(Channel.WEBHOOK, body)
        return JSONResponse({"id": str(uuid.uuid4()), "status": "queued"}, status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[Route("/api/messages/webhook", send, methods=["POST"]), Route("/healthz", healthz)],
        exception_handlers=HANDLERS,
        middleware=[Middleware(RateLimitHeaders)],
    )
    # The same rate-limit check as the real gateway's (one Redis round trip per request).
    app.state.rate_limits = GatewayLimits(settings)
    return app
