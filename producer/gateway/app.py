"""The gateway application: routes, error handlers, and the embedded workers in dev mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from starlette.applications import Starlette
from starlette.middleware import Middleware

from producer.enqueue import close_loop_acceptors
from producer.gateway import (
    analytics,
    bounces,
    console,
    cors,
    dead_letters,
    devices,
    events,
    experiments,
    fleet,
    health,
    inbox_page,
    message_story,
    messages,
    metrics,
    notifications,
    openapi,
    preferences,
    receipts,
    rules,
    scheduled,
    stream,
    templates,
    tracking,
    unsubscribe,
    webhooks,
)
from producer.gateway.errors import HANDLERS
from producer.gateway.ratelimit import GatewayLimits, RateLimitHeaders
from producer.gateway.security_headers import SecurityHeaders
from producer.service import NotificationService
from shared.config import Settings
from shared.metrics import QueueDepthCollector
from shared.realtime import open_hub


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            hits = getattr(app.state, "tracking_hits", None)
            if hits is not None:
                await hits.stop()
            app.state.rate_limits.close()
            await close_loop_acceptors()

    app = Starlette(
        routes=[
            *health.routes,
            *metrics.routes,
            *messages.routes,
            *message_story.routes,
            *scheduled.routes,
            *receipts.routes,
            *bounces.routes,
            *unsubscribe.routes,
            *tracking.routes,
            *templates.routes,
            *preferences.routes,
            *rules.routes,
            *events.routes,
            *devices.routes,  # before /api/notifications/{id}
            *notifications.routes,
            *stream.routes,
            *inbox_page.routes,
            *webhooks.routes,
            *analytics.routes,
            *experiments.routes,
            *dead_letters.routes,
            *fleet.routes,
            *console.routes,
            *openapi.routes,
        ],
        exception_handlers=HANDLERS,
        # Security headers outermost, so CORS preflight answers carry them too.
        middleware=[
            Middleware(SecurityHeaders, hsts_max_age_seconds=settings.hsts_max_age_seconds),
            *cors.middleware(settings),
            Middleware(RateLimitHeaders),
        ],
        lifespan=lifespan,
    )
    # Built now, so a route without its description stops the start instead of going missing.
    app.state.openapi = openapi.build(app.routes, title="KAI Messaging", version=version("kai-messaging"))
    app.state.service = NotificationService(settings)
    app.state.queue_depths = QueueDepthCollector(settings)
    app.state.hub = open_hub(settings)
    app.state.rate_limits = GatewayLimits(settings)
    app.state.body_timeout_s = settings.gateway_server.body_timeout_ms / 1000
    return app
