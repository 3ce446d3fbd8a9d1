"""The events pool: ``kai-messaging worker events`` consumes the ``events`` queue.

Each broker message carries an ``event_logs`` id. The actor matches the event against the
notification rules and creates the channel messages in one transaction
(:mod:`shared.events.processing`), then publishes their ids to the channel queues. A
redelivered event creates nothing new (per rule-and-channel idempotency keys).
"""

from __future__ import annotations

import dramatiq

from shared.broker import publish
from shared.config import Settings
from shared.db.session import session_scope
from shared.events import processing
from shared.events.queue import EVENTS_ACTOR, EVENTS_QUEUE
from shared.logging import get_logger

log = get_logger(__name__)


def handle(settings: Settings, broker: dramatiq.Broker, event_id: str) -> processing.Result:
    with session_scope(settings.database_url) as session:
        result = processing.process(session, settings, event_id)
    for channel, message_id in result.publish:
        publish(broker, channel, message_id)
    log.info("event.processed", event_id=event_id, messages=len(result.publish), duplicate=result.duplicate)
    return result


def declare_actor(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Actor[[str], None]:
    def process_event(event_id: str) -> None:
        handle(settings, broker, event_id)

    if EVENTS_QUEUE not in broker.get_declared_queues():
        broker.declare_queue(EVENTS_QUEUE)
    return dramatiq.Actor(
        process_event,
        broker=broker,
        actor_name=EVENTS_ACTOR,
        queue_name=EVENTS_QUEUE,
        priority=0,
        options={},
    )
