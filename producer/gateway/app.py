"""The gateway application: routes, error handlers, and the embedded workers in dev mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from producer.gateway import events, health, messages, metrics, preferences, rules, templates
from producer.gateway.errors import HANDLERS
from producer.service import NotificationService
from shared.config import Settings
from shared.metrics import QueueDepthCollector


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    app = Starlette(
        routes=[
            *health.routes,
            *metrics.routes,
            *messages.routes,
            *templates.routes,
            *preferences.routes,
            *rules.routes,
            *events.routes,
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.service = NotificationService(settings)
    app.state.queue_depths = QueueDepthCollector(settings)
    return app
