"""The runner's hand-off relay: on the embedded broker, publishes every id accepted on the same
database, by this process or by another one (:mod:`shared.handoff` tells why).

It runs in ``kai-messaging run`` only, beside the in-process workers. A send made in this
process wakes it at once; a send made elsewhere is found at the next poll, at most
``POLL_INTERVAL_S`` later; markers left while no runner was up are published at its start.

The broker is this process's memory, so what an earlier runner had taken and not finished
when it ended (stopped with a backlog, or killed) is gone with it: the rows still say queued,
their markers are spent. No other process can consume the embedded broker, so at its start
the runner publishes every queued message and event again, instead of leaving them to the
rescue of lost messages (``RESCUE_AFTER``, 15 minutes), which exists for a broker that lost
something while its consumers kept running.
"""

from __future__ import annotations

from datetime import timedelta

import dramatiq

from shared import handoff, relay, tracking
from shared.broker import publish
from shared.channels import Channel
from shared.config import Settings
from shared.db.rls import system_scope
from shared.events import processing
from shared.events.queue import publish_event
from shared.logging import get_logger
from workers.periodic import PeriodicThread

log = get_logger(__name__)

#: Seconds between two looks for markers left by other processes: the longest a message sent
#: from a second terminal waits for the runner. An idle look is one read of an empty table.
POLL_INTERVAL_S = 0.2

#: Markers taken per transaction; a backlog drains over consecutive passes without a pause.
BATCH_SIZE = 500


def publish_pending(broker: dramatiq.Broker, pending: relay.Pending) -> None:
    """Publish the id a relay marker stands for, to the queue it names."""
    if pending.kind == relay.EVENT:
        publish_event(broker, pending.id)
    else:
        publish(broker, Channel(pending.queue), pending.id)


class HandOffRelay:
    """Publishes the waiting markers into the runner's broker, on a thread of its own, and is
    the relay :func:`shared.handoff.nudge` wakes in this process while it runs."""

    def __init__(
        self, settings: Settings, broker: dramatiq.Broker, *, interval: float = POLL_INTERVAL_S
    ) -> None:
        self.settings = settings
        self.broker = broker
        self._runner = PeriodicThread("handoff", interval, lambda: self.publish_waiting() >= BATCH_SIZE)

    def publish_waiting(self) -> int:
        """Publish the markers there are now; returns how many. Each is published before the
        transaction that removed it commits: should that fail, the marker comes back and is
        published again, a duplicate the worker's claim recognises."""
        with system_scope(self.settings.database_url) as session:
            taken = relay.take_waiting(session.connection(), limit=BATCH_SIZE)
            for pending in taken:
                publish_pending(self.broker, pending)
        if taken:
            log.debug("handoff.published", count=len(taken))
        return len(taken)

    def recover(self) -> int:
        """Publish what an earlier runner left queued in its memory; returns how many. A row
        that also has a marker is published twice, a duplicate the worker's claim recognises."""
        recovered = 0
        while True:
            with system_scope(self.settings.database_url) as session:
                messages = tracking.take_due(
                    session, channels=list(Channel), limit=BATCH_SIZE, stale_after=timedelta(0)
                )
                events = processing.take_lost(session, stale_after=timedelta(0), limit=BATCH_SIZE)
                for message_id, channel in messages:
                    publish(self.broker, channel, message_id)
                for event_id in events:
                    publish_event(self.broker, event_id)
            recovered += len(messages) + len(events)
            if len(messages) < BATCH_SIZE and len(events) < BATCH_SIZE:
                break
        if recovered:
            log.info("handoff.recovered", count=recovered)
        return recovered

    def start(self) -> None:
        self.recover()
        handoff.serve(self._runner.wake)
        self._runner.start()

    def stop(self) -> None:
        handoff.withdraw()
        self._runner.stop()
