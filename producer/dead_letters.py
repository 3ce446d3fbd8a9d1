"""The dead-letter queues: messages that failed for good after their retries ran out.

Dramatiq dead-letters into ``<queue>.XQ`` on RabbitMQ. Reading peeks without consuming:
messages are taken unacknowledged and go back when the connection closes, so a listing
leaves the queue as it was. Replaying gives a message a fresh round of attempts in its
``notification_logs`` row and publishes it to its queue again; purging drops it from the
queue (its row keeps the failure). Both act on the messages named, or on every one up to a
limit; a message is acknowledged (gone from the dead letters) only once it has been handled.
Used by ``kai-messaging dlq`` and the console's ``/api/dead-letters``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import pika
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import tracking
from shared.broker import amqp_url_with_defaults, get_broker, publish
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from shared.errors import ConfigError

#: The most messages one call reads from a dead-letter queue.
MAX_LIMIT = 1000
#: AMQP's reply code for a queue that does not exist.
NOT_FOUND = 404


def dlq_name(channel: Channel) -> str:
    return f"{channel.queue_name}.XQ"


@contextmanager
def _queue(settings: Settings) -> Iterator[Any]:
    if settings.broker_url is None:
        raise ConfigError("the dead-letter queues live in RabbitMQ: set BROKER_URL")
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url_with_defaults(settings.broker_url)))
    try:
        yield connection.channel()
    finally:
        connection.close()  # what was not acknowledged goes back to the queue


def _message_id(body: bytes) -> str | None:
    args = json.loads(body).get("args") or [None]
    return args[0] if isinstance(args[0], str) else None


def _taken(ch: Any, channel: Channel, limit: int) -> Iterator[tuple[int, bytes]]:
    for _ in range(min(limit, MAX_LIMIT)):
        try:
            method, _props, body = ch.basic_get(dlq_name(channel), auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == NOT_FOUND:
                return  # never declared: nothing was ever dead-lettered there
            raise
        if method is None:
            return
        yield method.delivery_tag, body


def list_dead(settings: Settings, channel: Channel, *, limit: int = 100) -> list[dict[str, Any]]:
    """The first ``limit`` dead letters of ``channel``, with what their message rows say of
    the failure."""
    entries: list[dict[str, Any]] = []
    with _queue(settings) as ch:
        for _tag, body in _taken(ch, channel, limit):
            message = json.loads(body)
            entries.append(
                {
                    "id": _message_id(body),
                    "actor": message.get("actor_name"),
                    "queue": message.get("queue_name"),
                }
            )
    ids = [e["id"] for e in entries if e["id"]]
    with system_scope(settings.database_url) as session:
        rows = {r.id: r for r in session.scalars(select(NotificationLog).where(NotificationLog.id.in_(ids)))}
        for entry in entries:
            row = rows.get(entry["id"])
            if row is not None:
                entry.update(
                    status=row.status,
                    recipient=row.recipient,
                    attempts=row.attempts,
                    lastError=row.last_error,
                    errorCode=row.error_code,
                    failedAt=(row.completed_at or row.updated_at).isoformat(),
                )
    return entries


def _each(
    settings: Settings,
    channel: Channel,
    ids: Collection[str] | None,
    limit: int,
    handle: Callable[[str | None], bool],
) -> int:
    """Hand each dead letter of ``channel`` (those of ``ids`` only, when given) to ``handle``
    and acknowledge the ones it handled; returns how many."""
    handled = 0
    with _queue(settings) as ch:
        for tag, body in _taken(ch, channel, limit if ids is None else MAX_LIMIT):
            message_id = _message_id(body)
            if ids is not None and message_id not in ids:
                continue
            if handle(message_id):
                ch.basic_ack(tag)
                handled += 1
            if ids is not None and handled == len(ids):
                break
    return handled


def new_round(session: Session, settings: Settings, channel: Channel, message_id: str) -> bool:
    """Give a failed message a fresh round of its channel's attempts (the caller publishes it
    after the commit); False when it is not failed."""
    attempts = settings.retry_policy(channel).max_attempts
    return tracking.reopen(
        session, message_id, extra_attempts=attempts, from_statuses=frozenset({Status.FAILED})
    )


def replay_dead(
    settings: Settings, channel: Channel, *, ids: Collection[str] | None = None, limit: int = 100
) -> int:
    """Give dead-lettered messages a new round of attempts: those of ``ids``, or the first
    ``limit``."""
    broker = get_broker(settings)

    def replay(message_id: str | None) -> bool:
        if message_id:
            with system_scope(settings.database_url) as session:
                new_round(session, settings, channel, message_id)
            publish(broker, channel, message_id)
        return True  # a body without a message id has nothing to replay: it goes too

    return _each(settings, channel, set(ids) if ids is not None else None, limit, replay)


def purge_dead(
    settings: Settings, channel: Channel, *, ids: Collection[str] | None = None, limit: int = MAX_LIMIT
) -> int:
    """Drop dead letters for good (their rows keep the failure): those of ``ids``, or the
    first ``limit``."""
    return _each(settings, channel, set(ids) if ids is not None else None, limit, lambda _id: True)
