"""The Dramatiq broker: RabbitMQ in production, in-process for the embedded default.

Messages on the queues carry only a message id; the message itself is its
``notification_logs`` row. Publishing waits for RabbitMQ's publisher confirm, so a
returned id means the broker has the message on disk.

Middleware, in order (order matters: Retries must see the exception TimeLimit raises):
TimeLimit → ShutdownNotifications → CurrentMessage → AsyncIO → Retries. Pipelines,
Callbacks and AgeLimit are left out: no actor here uses them.
"""

from __future__ import annotations

import threading
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AsyncIO,
    CurrentMessage,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from shared.channels import Channel
from shared.config import Settings
from shared.errors import EnqueueError
from shared.rabbitmq import CoalescingRabbitmqBroker

#: An attempt that runs longer than this is interrupted (each network call has its own,
#: shorter timeout; this is the backstop for CPU-bound surprises).
ACTOR_TIME_LIMIT_MS = 5 * 60_000

#: Retries of the Retries middleware itself. Our own attempt counting in notification_logs
#: decides when a delivery has failed; this bound only matters when the database is down and
#: nothing can be recorded, so it is generous (with max_backoff 60 s, over an hour).
BROKER_MAX_RETRIES = 100
BROKER_MIN_BACKOFF_MS = 1_000
BROKER_MAX_BACKOFF_MS = 60_000

#: pika connection parameters that keep a publish from hanging forever under a RabbitMQ
#: resource alarm (blocked connection) and detect dead peers.
AMQP_URL_DEFAULTS = {"heartbeat": "60", "blocked_connection_timeout": "30", "connection_attempts": "3"}

_lock = threading.Lock()
_broker: dramatiq.Broker | None = None


def amqp_url_with_defaults(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in AMQP_URL_DEFAULTS.items():
        query.setdefault(key, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


def build_broker(settings: Settings) -> dramatiq.Broker:
    middleware = [
        TimeLimit(time_limit=ACTOR_TIME_LIMIT_MS),
        ShutdownNotifications(),
        CurrentMessage(),
        AsyncIO(),
        Retries(
            max_retries=BROKER_MAX_RETRIES,
            min_backoff=BROKER_MIN_BACKOFF_MS,
            max_backoff=BROKER_MAX_BACKOFF_MS,
        ),
    ]
    broker: dramatiq.Broker
    if settings.broker_url is None:
        broker = StubBroker(middleware=middleware)
    else:
        broker = CoalescingRabbitmqBroker(
            url=amqp_url_with_defaults(settings.broker_url),
            confirm_delivery=True,
            middleware=middleware,
        )
    for channel in Channel:
        broker.declare_queue(channel.queue_name)
    return broker


def get_broker(settings: Settings) -> dramatiq.Broker:
    """The process-wide broker, built on first use and installed as Dramatiq's global one."""
    global _broker
    with _lock:
        if _broker is None:
            _broker = build_broker(settings)
            dramatiq.set_broker(_broker)
        return _broker


def reset_broker() -> None:
    """Close and forget the process-wide broker (tests, shutdown)."""
    global _broker
    with _lock:
        if _broker is not None:
            _broker.close()
        _broker = None


def delivery_message(
    channel: Channel, message_id: str, *, at: datetime | None = None
) -> dramatiq.Message[None]:
    """The broker message that asks ``channel``'s workers to deliver ``message_id``; ``at``,
    when it is built ahead of its publish, dates it (else it is dated now)."""
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=channel.queue_name,
        actor_name=channel.actor_name,
        args=(message_id,),
        kwargs={},
        options={},
        # The broker-level id is the message id too, so logs on both sides line up.
        message_id=message_id,
    )
    return message if at is None else message.copy(message_timestamp=int(at.timestamp() * 1000))


def publish(
    broker: dramatiq.Broker, channel: Channel, message_id: str, *, delay_ms: int | None = None
) -> None:
    """Hand a message id to its channel's queue; returns once the broker confirmed it."""
    try:
        broker.enqueue(delivery_message(channel, message_id), delay=delay_ms)
    except Exception as exc:  # pika raises a wide family; all mean "not accepted"
        raise EnqueueError(f"the broker did not accept message {message_id}: {exc}") from exc
