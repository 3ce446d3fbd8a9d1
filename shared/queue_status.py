"""How RabbitMQ's queues stand: depth, consumers, delayed and dead-lettered messages per
queue, read with passive declares (nothing is created or consumed). Read by the metrics
collector behind ``/metrics`` and by ``kai-messaging status``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pika

from shared.broker import amqp_url_with_defaults
from shared.config import Settings


@dataclass
class QueueStatus:
    queue: str
    depth: int | None = None
    consumers: int | None = None
    delayed: int | None = None
    dead_lettered: int | None = None
    #: Outcomes in the last minute, by status (sent, delivered, failed, skipped).
    recent: dict[str, int] = field(default_factory=dict)


def _declare_passive(connection: pika.BlockingConnection, name: str) -> tuple[int, int] | None:
    channel = connection.channel()
    try:
        ok = channel.queue_declare(name, passive=True).method
        return int(ok.message_count), int(ok.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return None  # not declared yet: nobody has published or consumed there
    finally:
        if channel.is_open:
            channel.close()


def broker_status(settings: Settings, queues: list[str]) -> dict[str, QueueStatus]:
    result = {q: QueueStatus(queue=q) for q in queues}
    if settings.broker_url is None:
        return result  # the in-process broker has no shared state to look at
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url_with_defaults(settings.broker_url)))
    try:
        for name, status in result.items():
            main = _declare_passive(connection, name)
            if main is not None:
                status.depth, status.consumers = main
            delayed = _declare_passive(connection, f"{name}.DQ")
            status.delayed = delayed[0] if delayed else 0
            dead = _declare_passive(connection, f"{name}.XQ")
            status.dead_lettered = dead[0] if dead else 0
    finally:
        connection.close()
    return result
