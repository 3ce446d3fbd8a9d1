"""The dead-letter queues: messages that failed for good after their retries ran out.

Dramatiq dead-letters into ``<queue>.XQ`` on RabbitMQ. Listing peeks without consuming
(messages are returned unacknowledged, so they stay); replaying gives the message a fresh
round of attempts in its ``notification_logs`` row and publishes it to its queue again.
"""

from __future__ import annotations

import json
from typing import Any

import pika

from shared import tracking
from shared.broker import amqp_url_with_defaults, get_broker, publish
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.rls import system_scope
from shared.errors import ConfigError


def dlq_name(channel: Channel) -> str:
    return f"{channel.queue_name}.XQ"


def _channel(settings: Settings) -> tuple[pika.BlockingConnection, Any]:
    if settings.broker_url is None:
        raise ConfigError("the dead-letter queues live in RabbitMQ: set BROKER_URL")
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url_with_defaults(settings.broker_url)))
    return connection, connection.channel()


def _describe(body: bytes) -> dict[str, Any]:
    message = json.loads(body)
    args = message.get("args") or [None]
    return {"id": args[0], "actor": message.get("actor_name"), "queue": message.get("queue_name")}


def depth(settings: Settings, channel: Channel) -> int:
    connection, ch = _channel(settings)
    try:
        return int(ch.queue_declare(dlq_name(channel), passive=True).method.message_count)
    finally:
        connection.close()


def list_dead(settings: Settings, channel: Channel, *, limit: int = 100) -> list[dict[str, Any]]:
    connection, ch = _channel(settings)
    entries: list[dict[str, Any]] = []
    try:
        for _ in range(limit):
            method, _props, body = ch.basic_get(dlq_name(channel), auto_ack=False)
            if method is None:
                break
            entries.append(_describe(body))
    finally:
        connection.close()  # unacknowledged messages go back to the queue
    return entries


def replay_dead(settings: Settings, channel: Channel, *, limit: int = 100) -> int:
    """Give up to ``limit`` dead-lettered messages a new round of attempts."""
    broker = get_broker(settings)
    policy = settings.retry_policy(channel)
    connection, ch = _channel(settings)
    replayed = 0
    try:
        for _ in range(limit):
            method, _props, body = ch.basic_get(dlq_name(channel), auto_ack=False)
            if method is None:
                break
            message_id = _describe(body)["id"]
            if message_id:
                with system_scope(settings.database_url) as session:
                    tracking.reopen(
                        session,
                        message_id,
                        extra_attempts=policy.max_attempts,
                        from_statuses=frozenset({Status.FAILED}),
                    )
                publish(broker, channel, message_id)
                replayed += 1
            ch.basic_ack(method.delivery_tag)
    finally:
        connection.close()
    return replayed
