"""Dramatiq actors: one per channel, each on its own queue, all running the same pipeline.

The actors are coroutines (Dramatiq's AsyncIO middleware runs them on one event loop per
process): every message in flight waits on the same loop, where the pipeline's batched
database trips and the providers' pooled connections live, instead of each holding a
thread. The actor only translates the pipeline's :class:`~workers.delivery.pipeline.Outcome`
into broker terms: return (ack), ``raise Retry(delay=…)`` (the Retries middleware
re-publishes the message to the channel's delay queue), or fail the message so it is
dead-lettered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware

from shared.channels import Channel
from shared.config import Settings
from shared.db.session import dispose_loop_engines
from shared.errors import KaiError
from shared.events.queue import EVENTS_ACTOR
from shared.logging import get_logger
from workers.delivery.pipeline import Action, Pipeline

log = get_logger(__name__)

PipelineFactory = Callable[[Settings], Pipeline]


def _factories() -> dict[Channel, PipelineFactory]:
    # Imported here so a process only loads the provider libraries of channels it runs.
    from workers import chat, email, in_app, push, sms
    from workers.webhook import pipeline as webhook

    return {
        Channel.EMAIL: email.build_pipeline,
        Channel.SMS: sms.build_pipeline,
        Channel.WEBHOOK: webhook.build_pipeline,
        Channel.IN_APP: in_app.build_pipeline,
        Channel.PUSH: push.build_pipeline,
        Channel.CHAT: chat.build_pipeline,
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

    async def close(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            await pipeline.close()


class ClosePipelines(Middleware):
    """Closes the pipelines' connections on the event loop they were made on, once the worker
    threads have stopped and before the AsyncIO middleware stops that loop."""

    def __init__(self, pipelines: Iterable[LazyPipeline]) -> None:
        self.pipelines = list(pipelines)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return
        for pipeline in self.pipelines:
            try:
                loop_thread.run_coroutine(pipeline.close())
            except Exception:
                log.warning("worker.pipeline_close_failed", channel=pipeline.channel.value, exc_info=True)
        loop_thread.run_coroutine(dispose_loop_engines())


def declare_actor(
    broker: dramatiq.Broker, channel: Channel, pipeline: LazyPipeline
) -> dramatiq.Actor[[str], None]:
    async def deliver(message_id: str) -> None:
        outcome = await pipeline.get().run(message_id)
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
    if pipelines:
        # After AsyncIO in the list: ``after_*`` hooks run in reverse order, so this one runs
        # while the loop is still there.
        broker.add_middleware(ClosePipelines(pipelines.values()), after=AsyncIO)
    if EVENTS_ACTOR not in broker.actors:
        from workers import analytics, digests, events

        events.declare_actor(broker, settings)
        broker.add_middleware(events.EventRescueMiddleware(settings))
        broker.add_middleware(digests.DigestCloseMiddleware(settings))
        broker.add_middleware(analytics.AnalyticsFoldMiddleware(settings))
    return pipelines
