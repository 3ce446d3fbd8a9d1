"""The digest closer: in every process consuming ``events``, closes the due digests each
scheduler interval and publishes their messages (:mod:`shared.events.digest_close`)."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from shared.broker import publish
from shared.config import Settings
from shared.db.rls import system_scope
from shared.events import digest_close
from shared.events.queue import EVENTS_QUEUE
from workers.periodic import PeriodicThread

#: Buckets closed per transaction; a backlog drains over consecutive ticks without a pause.
CLOSE_BATCH = 200


def close_due(settings: Settings, broker: dramatiq.Broker) -> int:
    """Close what is due; returns how many messages were published."""
    # As the system: the due buckets belong to many users.
    with system_scope(settings.database_url) as session:
        messages = digest_close.close_due(session, settings, limit=CLOSE_BATCH)
    for channel, message_id in messages:
        publish(broker, channel, message_id)
    return len(messages)


class DigestCloseMiddleware(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runner: PeriodicThread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues: set[str] | None = worker.consumer_whitelist
        if queues is not None and EVENTS_QUEUE not in queues:
            return
        interval = self.settings.scheduler_interval_ms / 1000
        self._runner = PeriodicThread("digest_close", interval, lambda: self._step(broker))
        self._runner.start()

    def _step(self, broker: dramatiq.Broker) -> bool:
        return close_due(self.settings, broker) >= CLOSE_BATCH

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._runner is not None:
            self._runner.stop()
