"""The scheduler: publishes messages whose time has come and rescues messages the broker lost.

Long retry delays are parked in ``notification_logs`` (``due_at``) instead of the broker, so
a fleet restart loses none of them. Every worker process runs one scheduler thread for the
channels it consumes; on PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets any number of them run
side by side without publishing a row twice. Rows are published before the transaction that
marks them commits: if the broker refuses, the transaction rolls back and the next tick
tries again.

A tick's rows go to RabbitMQ together, their confirms pipelined
(:class:`~workers.pipelined_publisher.PipelinedPublisher`): a burst of scheduled sends due
the same second costs a round trip per tick, not one per message.

Scheduled sends and parked messages are taken ahead of their time (``SCHEDULER_LOOKAHEAD``,
with RabbitMQ): each scheduler moves those due within the lookahead to ``queued`` with a
relay marker dated at their due time, keeps them in memory and publishes them when the time
comes, not at its next tick. Reading and
writing 10,000 rows takes seconds; publishing them is all that is left for their second. A
scheduler that dies holding some leaves their markers, which any scheduler's relay publishes
``PUBLISH_RELAY_AFTER`` past their time; one that stops gives them back as ``scheduled``.
While a burst is being published, the deliveries of the process wait for it (at most
``BURST_HOLD_S``): the sends due now go to the broker before this process starts more work.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from shared import relay, tracking
from shared.broker import delivery_message, publish
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import system_scope
from shared.events import escalation
from shared.events.queue import event_message
from shared.logging import get_logger
from workers.periodic import PeriodicThread
from workers.pipelined_publisher import QueuePublisher

log = get_logger(__name__)

#: Rows published per tick; a backlog drains over consecutive ticks without a pause.
BATCH_SIZE = 500
#: Scheduled sends taken ahead per transaction, and the most one scheduler holds at a time.
STAGE_BATCH = 1_000
STAGE_LIMIT = 50_000
#: The longest a delivery of this process waits for a burst of due sends to be published.
BURST_HOLD_S = 2.0


class Scheduler:
    def __init__(self, settings: Settings, broker: dramatiq.Broker, channels: Iterable[Channel]) -> None:
        self.settings = settings
        self.broker = broker
        self.channels = sorted(set(channels))
        self.interval = settings.scheduler_interval_ms / 1000
        self.rescue_after = timedelta(milliseconds=settings.rescue_after_ms)
        self.relay_after = timedelta(milliseconds=settings.publish_relay_after_ms)
        # On the embedded broker a relay marker is published as soon as it is written (it is
        # the hand-off between processes), so nothing can wait in one for its time.
        lookahead = 0 if settings.embedded_broker else settings.scheduler_lookahead_ms
        self.lookahead = timedelta(milliseconds=lookahead)
        #: Scheduled sends taken ahead, each with its broker message encoded when it was
        #: taken: a heap, soonest first.
        self._staged: list[tuple[tracking.Staged, bytes]] = []
        #: After a failed release, the next try waits for this (not a busy loop while the
        #: broker is away).
        self._retry_at = utcnow()
        #: Clear while a burst of due sends is being published (see ``hold_for_burst``).
        self._no_burst = threading.Event()
        self._no_burst.set()
        #: Removes the markers of released sends as the broker confirms them.
        self._settler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scheduler-settle")
        self._runner = PeriodicThread("scheduler", self.interval, self.step, self.until_next)
        #: Used by the scheduler's thread only, on RabbitMQ.
        self._publisher: QueuePublisher | None = None
        if settings.broker_url is not None and isinstance(broker, RabbitmqBroker):
            self._publisher = QueuePublisher(broker, settings.broker_url)

    def step(self) -> bool:
        """One pass; True when work was left for another pass at once."""
        self.release()
        published = self.tick()
        staged = self.stage()
        return published >= BATCH_SIZE or staged >= STAGE_BATCH

    def until_next(self) -> float | None:
        """Seconds until the soonest staged send is due; None when none is staged."""
        if not self._staged:
            return None
        return (max(self._staged[0][0].due, self._retry_at) - utcnow()).total_seconds()

    def tick(self) -> int:
        """Publish what is due now, and what was accepted but never published. Returns how
        many were published."""
        with system_scope(self.settings.database_url) as session:
            # Escalation steps no longer needed end canceled first, in the same transaction
            # that publishes the rest: a step is checked and sent, or canceled, never both.
            # One instant for both, or a step falling due in between would go unchecked.
            now = utcnow()
            escalation.settle_due(session, self.channels, now)
            due = tracking.take_due(
                session, channels=self.channels, limit=BATCH_SIZE, stale_after=self.rescue_after, now=now
            )
            self._publish(due)
        if due:
            log.info("scheduler.published", count=len(due))
        return len(due) + self.relay()

    def _publish(self, due: list[tuple[str, Channel]]) -> None:
        """Publish ``due``; returns once the broker confirmed all of them, else raises."""
        if not due:
            return
        if self.settings.broker_url is None:
            # The embedded broker lives in this process.
            for message_id, channel in due:
                publish(self.broker, channel, message_id)
            return
        self._send([delivery_message(channel, message_id) for message_id, channel in due])

    def _send(self, messages: list[dramatiq.Message[None]]) -> None:
        """Publish to RabbitMQ, confirms pipelined."""
        if messages:
            assert self._publisher is not None
            self._publisher.publish(messages)

    def stage(self) -> int:
        """Take the scheduled sends due within the lookahead; returns how many."""
        room = min(STAGE_BATCH, STAGE_LIMIT - len(self._staged))
        if not self.lookahead or room <= 0:
            return 0
        with system_scope(self.settings.database_url) as session:
            staged = tracking.stage_scheduled(
                session, channels=self.channels, until=utcnow() + self.lookahead, limit=room
            )
            relay.pend_planned(
                session.connection(),
                [(relay.Pending(s.id, relay.MESSAGE, s.channel.queue_name), s.due) for s in staged],
            )
        for s in staged:
            # Encoded now, so that the second they are due costs only their publish.
            heapq.heappush(self._staged, (s, delivery_message(s.channel, s.id, at=s.due).encode()))
        return len(staged)

    def release(self) -> int:
        """Publish the staged sends whose time has come in one burst (its bodies encoded when
        they were taken); returns how many. As the broker confirms them, a few hundred at a
        time, their markers are removed on the settling thread, so the first are settled
        while the rest are still on their way and the publishing thread never waits for the
        database. Those not confirmed when the broker fails go back to the heap."""
        ready = self._ready(STAGE_LIMIT)
        if not ready:
            return 0
        confirmed = 0
        settling: list[Future[None]] = []

        def settle(upto: int) -> None:
            nonlocal confirmed
            ids = [s.id for s, _ in ready[confirmed:upto]]
            confirmed = upto
            settling.append(self._settler.submit(self._settle, ids))

        assert self._publisher is not None  # nothing is staged without RabbitMQ
        self._no_burst.clear()
        try:
            self._publisher.publish_encoded([(s.channel.queue_name, body) for s, body in ready], settle)
        except Exception:
            for item in ready[confirmed:]:  # their markers stay: the relay has them if this never works
                heapq.heappush(self._staged, item)
            self._retry_at = utcnow() + timedelta(seconds=self.interval)
            raise
        finally:
            self._no_burst.set()
            for done in settling:
                failed = done.exception()  # waits for it
                if failed is not None:  # the relay publishes these again: a duplicate the claim sees
                    log.error("scheduler.settle_failed", exc_info=failed)
        log.info("scheduler.released", count=len(ready))
        return len(ready)

    def hold_for_burst(self, timeout: float = BURST_HOLD_S) -> bool:
        """Returns once no burst is being published, or after ``timeout``. A delivery thread
        calls it before it starts a message: the delivery threads of a busy process hold the
        GIL most of the time, and the publishing thread, which gives it up at every socket
        call, waited for it long enough to spread 5,000 due sends over two seconds. A burst
        takes a few hundred milliseconds; deliveries already started are not held. False
        when the burst was still going at ``timeout``."""
        return self._no_burst.wait(timeout)

    def _settle(self, ids: list[str]) -> None:
        with system_scope(self.settings.database_url) as session:
            relay.published(session.connection(), ids)

    def _ready(self, limit: int) -> list[tuple[tracking.Staged, bytes]]:
        """Up to ``limit`` staged sends now due, taken off the heap."""
        now = utcnow()
        ready: list[tuple[tracking.Staged, bytes]] = []
        if now < self._retry_at:
            return ready
        while self._staged and self._staged[0][0].due <= now and len(ready) < limit:
            ready.append(heapq.heappop(self._staged))
        return ready

    def unstage(self) -> None:
        """Give back what was staged and not published (the scheduler is stopping)."""
        staged, self._staged = self._staged, []
        if not staged:
            return
        with system_scope(self.settings.database_url) as session:
            back = tracking.unstage(session, [s for s, _ in staged])
            relay.published(session.connection(), [s.id for s, _ in staged])
        log.info("scheduler.unstaged", count=back)

    def relay(self) -> int:
        """Publish accepted rows whose accepting process died before the broker confirmed."""
        if self.settings.embedded_broker:
            return 0  # the runner's hand-off relay publishes every marker as it appears
        with system_scope(self.settings.database_url) as session:
            stale = relay.take_stale(session.connection(), older_than=self.relay_after, limit=BATCH_SIZE)
            self._send([_broker_message(pending) for pending in stale])
        if stale:
            log.warning("scheduler.relayed", count=len(stale))
        return len(stale)

    def start(self) -> None:
        if self.channels:
            self._runner.start()

    def stop(self, timeout: float = 10) -> None:
        self._runner.stop(timeout)
        try:
            self.unstage()
        except Exception:  # the markers remain: the relay publishes them after their time
            log.exception("scheduler.unstage_failed")
        if self._publisher is not None:
            self._publisher.close()
        self._settler.shutdown()


def _broker_message(pending: relay.Pending) -> dramatiq.Message[None]:
    if pending.kind == relay.EVENT:
        return event_message(pending.id)
    return delivery_message(Channel(pending.queue), pending.id)


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

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.hold_for_burst()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
