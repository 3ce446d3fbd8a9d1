"""The gateway application: routes, error handlers, and the embedded workers in dev mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from producer.gateway import health, inbox_page, messages, notifications, stream
from producer.gateway.errors import HANDLERS
from producer.service import NotificationService
from shared.config import Settings
from shared.realtime import open_hub


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()

    app = Starlette(
        routes=[
            *health.routes,
            *messages.routes,
            *notifications.routes,
            *stream.routes,
            *inbox_page.routes,
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.service = NotificationService(settings)
    app.state.hub = open_hub(settings)
    return app
