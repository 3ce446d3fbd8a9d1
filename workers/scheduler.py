"""The scheduler: publishes messages whose time has come and rescues messages the broker lost.

Long retry delays are parked in ``notification_logs`` (``due_at``) instead of the broker, so
a fleet restart loses none of them. Every worker process runs one scheduler thread for the
channels it consumes; on PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets any number of them run
side by side without publishing a row twice. Rows are published before the transaction that
marks them commits: if the broker refuses, the transaction rolls back and the next tick
tries again.

A tick's rows go to RabbitMQ together, their confirms pipelined on the worker's event loop
(:class:`~shared.publisher.AmqpPublisher`): a burst of scheduled sends due the same second
costs a round trip per tick, not one per message, while the tick's transaction holds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread
from dramatiq.middleware import Middleware

from shared import relay, tracking
from shared.broker import publish
from shared.channels import Channel
from shared.config import Settings
from shared.db.rls import system_scope
from shared.events import escalation
from shared.logging import get_logger
from shared.publisher import AmqpPublisher, channel_message
from workers.handoff import publish_pending
from workers.periodic import PeriodicThread

log = get_logger(__name__)

#: Rows published per tick; a backlog drains over consecutive ticks without a pause.
BATCH_SIZE = 500


class Scheduler:
    def __init__(self, settings: Settings, broker: dramatiq.Broker, channels: Iterable[Channel]) -> None:
        self.settings = settings
        self.broker = broker
        self.channels = sorted(set(channels))
        self.interval = settings.scheduler_interval_ms / 1000
        self.rescue_after = timedelta(milliseconds=settings.rescue_after_ms)
        self.relay_after = timedelta(milliseconds=settings.publish_relay_after_ms)
        self._runner = PeriodicThread("scheduler", self.interval, lambda: self.tick() >= BATCH_SIZE)
        #: The pipelined publisher, and the event loop it lives on.
        self._publisher: tuple[EventLoopThread, AmqpPublisher] | None = None

    def tick(self) -> int:
        """Publish what is due now, and what was accepted but never published. Returns how
        many were published."""
        with system_scope(self.settings.database_url) as session:
            # Escalation steps no longer needed end canceled first, in the same transaction
            # that publishes the rest: a step is checked and sent, or canceled, never both.
            escalation.settle_due(session, self.channels)
            due = tracking.take_due(
                session, channels=self.channels, limit=BATCH_SIZE, stale_after=self.rescue_after
            )
            self._publish(due)
        if due:
            log.info("scheduler.published", count=len(due))
        return len(due) + self.relay()

    def _publish(self, due: list[tuple[str, Channel]]) -> None:
        """Publish ``due``; returns once the broker confirmed all of them, else raises."""
        if not due:
            return  # an idle tick need not hop onto the event loop
        url = self.settings.broker_url
        thread = None if url is None else get_event_loop_thread()
        if url is None or thread is None:
            # The embedded broker lives in this process; a worker without an event loop
            # (none of ours) publishes one by one.
            for message_id, channel in due:
                publish(self.broker, channel, message_id)
            return
        if self._publisher is None or self._publisher[0] is not thread:
            self._publisher = (thread, AmqpPublisher(url))
        publisher = self._publisher[1]
        thread.run_coroutine(publisher.publish([channel_message(channel, i) for i, channel in due]))

    def relay(self) -> int:
        """Publish accepted rows whose accepting process died before the broker confirmed."""
        if self.settings.embedded_broker:
            return 0  # the runner's hand-off relay publishes every marker as it appears
        with system_scope(self.settings.database_url) as session:
            stale = relay.take_stale(session.connection(), older_than=self.relay_after, limit=BATCH_SIZE)
            for pending in stale:
                publish_pending(self.broker, pending)
        if stale:
            log.warning("scheduler.relayed", count=len(stale))
        return len(stale)

    def start(self) -> None:
        if self.channels:
            self._runner.start()

    def stop(self, timeout: float = 10) -> None:
        self._runner.stop(timeout)
        if self._publisher is not None:
            thread, publisher = self._publisher
            self._publisher = None
            if thread.loop.is_running():
                thread.run_coroutine(publisher.close())


class SchedulerMiddleware(Middleware):
    """Runs a :class:`Scheduler` inside each worker process for the queues it consumes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.scheduler: Scheduler | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues: set[str] | None = worker.consumer_whitelist
        channels = [c for c in Channel if queues is None or c.queue_name in queues]
        self.scheduler = Scheduler(self.settings, broker, channels)
        self.scheduler.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
