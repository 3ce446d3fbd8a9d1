"""``/healthz`` (the process answers) and ``/readyz`` (broker, database and Redis reachable)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.config import Settings
from shared.db.session import get_engine

#: Each dependency check gives up after this long, so a hung dependency can't hang the probe.
CHECK_TIMEOUT_SECONDS = 2.0


def check_database(settings: Settings) -> None:
    with get_engine(settings.database_url).connect() as conn:
        conn.execute(text("SELECT 1"))


def check_broker(settings: Settings) -> None:
    if settings.broker_url is None:
        return
    import pika

    from shared.broker import amqp_url_with_defaults

    params = pika.URLParameters(amqp_url_with_defaults(settings.broker_url))
    params.socket_timeout = CHECK_TIMEOUT_SECONDS
    params.connection_attempts = 1
    connection = pika.BlockingConnection(params)
    connection.close()


def check_redis(settings: Settings) -> None:
    if settings.redis_url is None:
        return
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.service.settings
    checks: dict[str, Any] = {}
    for name, check in (("database", check_database), ("broker", check_broker), ("redis", check_redis)):
        try:
            await run_in_threadpool(check, settings)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
