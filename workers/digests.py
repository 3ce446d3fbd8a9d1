"""The digest closer: in every process consuming ``events``, closes the due digests each
scheduler interval and publishes their messages (:mod:`shared.events.digest_close`), and
purges the digests closed longer than KEEP_CLOSED ago. A tick's messages go to RabbitMQ
together, their confirms pipelined, as the scheduler's do."""

from __future__ import annotations

from datetime import timedelta

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from shared import handoff, relay
from shared.broker import delivery_message
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import system_scope
from shared.events import digest_close
from workers.periodic import EventsDuty
from workers.pipelined_publisher import QueuePublisher

#: Buckets closed per transaction; a backlog drains over consecutive ticks without a pause.
CLOSE_BATCH = 200
#: How long a closed digest stays for an event's status to show, before it is purged.
KEEP_CLOSED = timedelta(days=7)
#: Closed digests purged per transaction.
PURGE_BATCH = 1000


def close_due(settings: Settings, publisher: QueuePublisher | None) -> int:
    """Close what is due; returns how many messages were published (through ``publisher``
    on RabbitMQ, None on the embedded broker)."""
    # As the system: the due buckets belong to many users.
    with system_scope(settings.database_url) as session:
        messages = digest_close.close_due(session, settings, limit=CLOSE_BATCH)
    if not messages:
        return 0
    if settings.embedded_broker:
        handoff.nudge()  # the relay markers are the hand-off to the embedded broker
        return len(messages)
    assert publisher is not None
    publisher.publish([delivery_message(channel, message_id) for channel, message_id in messages])
    with system_scope(settings.database_url) as session:
        relay.published(session.connection(), [message_id for _, message_id in messages])
    return len(messages)


def purge_closed(settings: Settings) -> int:
    """Remove the digests closed longer than KEEP_CLOSED ago; returns how many."""
    with system_scope(settings.database_url) as session:
        return digest_close.purge_closed(session, closed_before=utcnow() - KEEP_CLOSED, limit=PURGE_BATCH)


class DigestCloseMiddleware(EventsDuty):
    name = "digest_close"
    _publisher: QueuePublisher | None = None

    def boot(self, broker: dramatiq.Broker) -> None:
        if self.settings.broker_url is not None and isinstance(broker, RabbitmqBroker):
            self._publisher = QueuePublisher(broker, self.settings.broker_url)

    def step(self, broker: dramatiq.Broker) -> bool:
        backlog = close_due(self.settings, self._publisher) >= CLOSE_BATCH
        return purge_closed(self.settings) >= PURGE_BATCH or backlog

    def shutdown(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
