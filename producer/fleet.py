"""What the fleet is doing right now: queue, delay-queue and dead-letter depths and consumers
per channel (from RabbitMQ), and the last minute's outcomes per channel (from
``notification_logs``). Backs ``kai-messaging status`` and the console's ``GET /api/fleet``;
``/metrics`` exports the same numbers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog, utcnow
from shared.db.rls import system_scope
from shared.queue_status import QueueStatus, broker_status

#: The window of "recent" outcomes shown next to the queue depths.
RECENT_WINDOW = timedelta(minutes=1)


def recent_outcomes(settings: Settings) -> dict[str, dict[str, int]]:
    since = utcnow() - RECENT_WINDOW
    with system_scope(settings.database_url) as session:
        rows = session.execute(
            select(NotificationLog.channel, NotificationLog.status, func.count())
            .where(NotificationLog.completed_at >= since)
            .group_by(NotificationLog.channel, NotificationLog.status)
        ).all()
    outcomes: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        outcomes.setdefault(channel, {})[status] = int(count)
    return outcomes


def fleet_status(settings: Settings, extra_queues: tuple[str, ...] = ()) -> list[QueueStatus]:
    queues = [c.queue_name for c in Channel] + list(extra_queues)
    statuses = broker_status(settings, queues)
    for channel, outcomes in recent_outcomes(settings).items():
        if channel in statuses:
            statuses[channel].recent = outcomes
    return list(statuses.values())


def view(statuses: list[QueueStatus], settings: Settings) -> dict[str, object]:
    return {
        "broker": "rabbitmq" if settings.broker_url else "embedded",
        "queues": [
            {
                "queue": s.queue,
                "depth": s.depth,
                "consumers": s.consumers,
                "delayed": s.delayed,
                "deadLettered": s.dead_lettered,
                "recent": s.recent,
            }
            for s in statuses
        ],
    }
