"""The events pool: ``kai-messaging worker events`` consumes the ``events`` queue.

Each broker message carries an ``event_logs`` id. The actor matches the event against the
notification rules and creates the channel messages in one transaction
(:mod:`shared.events.processing`), then publishes their ids to the channel queues. A
redelivered event creates nothing new (per rule-and-channel idempotency keys). An event
the broker lost (still queued after RESCUE_AFTER) is published again by
:class:`EventRescueMiddleware`.
"""

from __future__ import annotations

from datetime import timedelta

import dramatiq

from shared.broker import publish
from shared.config import Settings
from shared.db.rls import system_scope
from shared.events import processing
from shared.events.queue import EVENTS_ACTOR, EVENTS_QUEUE, publish_event
from shared.logging import get_logger
from workers.periodic import EventsDuty

log = get_logger(__name__)

#: Events republished per rescue pass.
RESCUE_BATCH = 500


def handle(settings: Settings, broker: dramatiq.Broker, event_id: str) -> processing.Result:
    # As the system: an event may concern no user, and fans out to webhook endpoints that
    # belong to none.
    with system_scope(settings.database_url) as session:
        result = processing.process(session, settings, event_id)
    for channel, message_id in result.publish:
        publish(broker, channel, message_id)
    log.info("event.processed", event_id=event_id, messages=len(result.publish), duplicate=result.duplicate)
    return result


def rescue_lost(settings: Settings, broker: dramatiq.Broker) -> int:
    """Publish again the events the broker lost; returns how many. Publishing happens before
    the marking commits, so a refused publish is retried on the next pass."""
    stale = timedelta(milliseconds=settings.rescue_after_ms)
    with system_scope(settings.database_url) as session:
        lost = processing.take_lost(session, stale_after=stale, limit=RESCUE_BATCH)
        for event_id in lost:
            publish_event(broker, event_id)
    if lost:
        log.warning("event.rescued", count=len(lost))
    return len(lost)


class EventRescueMiddleware(EventsDuty):
    """In a process consuming ``events``, looks for lost events every scheduler interval."""

    name = "event_rescue"

    def step(self, broker: dramatiq.Broker) -> bool:
        return rescue_lost(self.settings, broker) >= RESCUE_BATCH


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
