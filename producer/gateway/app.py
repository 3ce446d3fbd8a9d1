"""The gateway application: routes, error handlers, and the embedded workers in dev mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from producer.gateway import health, messages, webhooks
from producer.gateway.errors import HANDLERS
from producer.service import NotificationService
from shared.config import Settings


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    app = Starlette(
        routes=[*health.routes, *messages.routes, *webhooks.routes],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.service = NotificationService(settings)
    return app
