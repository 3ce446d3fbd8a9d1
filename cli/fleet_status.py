"""What the fleet is doing right now: queue, delay-queue and dead-letter depths and consumers
per channel (from RabbitMQ), and the last minute's outcomes per channel (from
``notification_logs``). Backs ``kai-messaging status``."""

from __future__ import annotations

from dataclasses import asdict
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


def as_dicts(statuses: list[QueueStatus]) -> list[dict[str, object]]:
    return [asdict(s) for s in statuses]


def render(statuses: list[QueueStatus]) -> None:
    from rich.console import Console
    from rich.table import Table

    def cell(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    table = Table(title="KAI Messaging fleet", title_justify="left")
    for column in (
        "queue",
        "depth",
        "consumers",
        "delayed",
        "dead-lettered",
        "sent/1m",
        "failed/1m",
        "skipped/1m",
    ):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for s in statuses:
        sent = s.recent.get("sent", 0) + s.recent.get("delivered", 0)
        failed = s.recent.get("failed", 0)
        table.add_row(
            s.queue,
            cell(s.depth),
            cell(s.consumers),
            cell(s.delayed),
            f"[red]{s.dead_lettered:,}[/red]" if s.dead_lettered else cell(s.dead_lettered),
            f"{sent:,}",
            f"[red]{failed:,}[/red]" if failed else "0",
            f"{s.recent.get('skipped', 0):,}",
        )
    Console().print(table)
