"""Retention: in-app notifications older than ``IN_APP_RETENTION_DAYS`` are deleted.

Every process that consumes the in-app queue runs one retention thread. It deletes in
batches, each its own short transaction, so a large backlog never holds locks for long or
bloats one transaction; on PostgreSQL, ``SKIP LOCKED`` lets several processes purge side by
side. The ``created_at`` index keeps the search for expired rows cheap when there are none.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from shared import inbox
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import system_scope
from shared.logging import get_logger
from workers.periodic import PeriodicThread

log = get_logger(__name__)

#: Rows deleted per transaction.
BATCH_SIZE = 1000


def purge_expired(settings: Settings, *, now: datetime | None = None) -> int:
    """Delete every notification past the retention age; returns how many were deleted."""
    if settings.in_app_retention_days == 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=settings.in_app_retention_days)
    total = 0
    while True:
        # Retention spans every user's inbox: the one place this pool acts across users.
        with system_scope(settings.database_url) as session:
            deleted = inbox.purge_expired(session, cutoff, BATCH_SIZE)
        total += deleted
        if deleted < BATCH_SIZE:
            break
    if total:
        log.info("retention.purged", count=total, older_than_days=settings.in_app_retention_days)
    return total


class Retention:
    """Runs :func:`purge_expired` every ``IN_APP_RETENTION_INTERVAL`` on a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.in_app_retention_interval_ms / 1000
        self._runner = PeriodicThread("retention", self.interval, self._step)

    def _step(self) -> bool:
        purge_expired(self.settings)
        return False  # purge_expired already works through the whole backlog in batches

    def start(self) -> None:
        if self.settings.in_app_retention_days > 0:
            self._runner.start()

    def stop(self, timeout: float = 10) -> None:
        self._runner.stop(timeout)


class RetentionMiddleware(Middleware):
    """Runs :class:`Retention` in worker processes that consume the in-app queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.retention: Retention | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues: set[str] | None = worker.consumer_whitelist
        if queues is None or Channel.IN_APP.queue_name in queues:
            self.retention = Retention(self.settings)
            self.retention.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.retention is not None:
            self.retention.stop()
