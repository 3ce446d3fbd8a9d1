"""``kai-messaging status``: the fleet's queues and the last minute's outcomes
(:mod:`producer.fleet`), as a table or JSON."""

from __future__ import annotations

from dataclasses import asdict

from shared.queue_status import QueueStatus


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
