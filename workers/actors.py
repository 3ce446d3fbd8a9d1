"""Dramatiq actors: one per channel, each on its own queue, all running the same pipeline.

The actor only translates the pipeline's :class:`~workers.delivery.pipeline.Outcome` into broker
terms: return (ack), ``raise Retry(delay=…)`` (the Retries middleware re-publishes the
message to the channel's delay queue), or fail the message so it is dead-lettered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import CurrentMessage

from shared.channels import Channel
from shared.config import Settings
from shared.errors import KaiError
from shared.events.queue import EVENTS_ACTOR
from workers.delivery.pipeline import Action, Pipeline

PipelineFactory = Callable[[Settings], Pipeline]


def _factories() -> dict[Channel, PipelineFactory]:
    # Imported here so a process only loads the provider libraries of channels it runs.
    from workers import email, in_app, sms
    from workers.webhook import pipeline as webhook

    return {
        Channel.EMAIL: email.build_pipeline,
        Channel.SMS: sms.build_pipeline,
        Channel.WEBHOOK: webhook.build_pipeline,
        Channel.IN_APP: in_app.build_pipeline,
    }


class LazyPipeline:
    """Builds the channel's pipeline (and its provider connections) on the first message, so
    importing the worker module stays cheap and fork-safe."""

    def __init__(self, channel: Channel, settings: Settings) -> None:
        self.channel = channel
        self.settings = settings
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    def get(self) -> Pipeline:
        if self._pipeline is None:
            with self._lock:
                if self._pipeline is None:
                    self._pipeline = _factories()[self.channel](self.settings)
        return self._pipeline

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.provider.close()
            self._pipeline.limiter.close()
            self._pipeline = None


def declare_actor(
    broker: dramatiq.Broker, channel: Channel, pipeline: LazyPipeline
) -> dramatiq.Actor[[str], None]:
    def deliver(message_id: str) -> None:
        outcome = pipeline.get().run(message_id)
        if outcome.action is Action.RETRY:
            raise dramatiq.Retry(outcome.reason, delay=outcome.delay_ms)
        if outcome.action is Action.DEAD_LETTER:
            current = CurrentMessage.get_current_message()
            if current is None:
                raise KaiError("dead-lettering needs the CurrentMessage middleware")
            current.fail()  # type: ignore[attr-defined]

    deliver.__name__ = deliver.__qualname__ = channel.actor_name
    return dramatiq.Actor(
        deliver,
        broker=broker,
        actor_name=channel.actor_name,
        queue_name=channel.queue_name,
        priority=0,
        options={},
    )


def declare_all(broker: dramatiq.Broker, settings: Settings) -> dict[Channel, LazyPipeline]:
    """Declare every channel's actor (and the events actor) on ``broker``; which queues a
    process consumes is the worker's choice (``--queues``)."""
    pipelines: dict[Channel, LazyPipeline] = {}
    for channel in Channel:
        if channel.actor_name in broker.actors:
            continue
        pipelines[channel] = LazyPipeline(channel, settings)
        declare_actor(broker, channel, pipelines[channel])
    if EVENTS_ACTOR not in broker.actors:
        from workers import events

        events.declare_actor(broker, settings)
        broker.add_middleware(events.EventRescueMiddleware(settings))
    return pipelines
