"""Readiness checks of the shared components, used by the gateway's ``/readyz`` and by
``kai-messaging health`` (the worker probe). Each check has its own short timeout so a hung
dependency cannot hang the probe."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from shared.config import Settings
from shared.db.session import get_engine

#: Seconds each dependency check may take.
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
    pika.BlockingConnection(params).close()


def check_redis(settings: Settings) -> None:
    if settings.redis_url is None:
        return
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()


CHECKS: dict[str, Callable[[Settings], None]] = {
    "database": check_database,
    "broker": check_broker,
    "redis": check_redis,
}


def run_check(name: str, settings: Settings) -> str:
    try:
        CHECKS[name](settings)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def readiness(settings: Settings) -> dict[str, str]:
    return {name: run_check(name, settings) for name in CHECKS}
