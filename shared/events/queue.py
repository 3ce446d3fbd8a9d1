"""The ``events`` queue: like the channel queues, it carries only ids (of ``event_logs`` rows)."""

from __future__ import annotations

import dramatiq

from shared.errors import EnqueueError

#: The queue ``kai-messaging worker events`` consumes, and the actor on it.
EVENTS_QUEUE = "events"
EVENTS_ACTOR = "process_event"


def event_message(event_id: str) -> dramatiq.Message[None]:
    """The broker message of an event: its id, for the events actor."""
    return dramatiq.Message(
        queue_name=EVENTS_QUEUE,
        actor_name=EVENTS_ACTOR,
        args=(event_id,),
        kwargs={},
        options={},
        message_id=event_id,
    )


def publish_event(broker: dramatiq.Broker, event_id: str) -> None:
    """Hand an event to the events queue; returns once the broker confirmed it."""
    message = event_message(event_id)
    if EVENTS_QUEUE not in broker.get_declared_queues():
        broker.declare_queue(EVENTS_QUEUE)
    try:
        broker.enqueue(message)
    except Exception as exc:  # pika raises a wide family; all mean "not accepted"
        raise EnqueueError(f"the broker did not accept event {event_id}: {exc}") from exc
