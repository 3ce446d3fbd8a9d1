"""The analytics folder: in every process consuming ``events``, empties ``analytics_events``
into the hourly and daily rollups each scheduler interval (at once again while a backlog
remains), then lets experiments that promote themselves do so.

A batch is one transaction: the events taken, the measures marked counted per message and
the rollups raised commit together, so an event is counted exactly once even if the process
dies mid-batch. One folder works at a time (a transaction-scoped advisory lock on PostgreSQL;
SQLite has one writer anyway): several processes only take turns. On PostgreSQL a batch is a
handful of statements whatever its size (ids and rows go as arrays; the rollups are raised by
one upsert that adds the counters and merges the histograms in the database).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dramatiq
from sqlalchemy import Connection, Table, delete, select, text, tuple_
from sqlalchemy.dialects import sqlite

from shared import analytics
from shared.config import Settings
from shared.db.models import (
    COUNTERS,
    DIMENSIONS,
    AnalyticsCounted,
    AnalyticsDaily,
    AnalyticsEvent,
    AnalyticsHourly,
    NotificationLog,
    utcnow,
)
from shared.db.rls import system_scope
from shared.logging import get_logger
from shared.templates import experiments
from workers.periodic import EventsDuty

log = get_logger(__name__)

#: Events folded per transaction.
FOLD_BATCH = 5000
#: An arbitrary constant naming the folder's advisory lock.
_LOCK = 0x4B41_4901

_TAKE = text(
    """
    DELETE FROM analytics_events WHERE id IN (
        SELECT id FROM analytics_events ORDER BY id LIMIT :limit
    )
    RETURNING id, message_id, measure, occurred_at
    """
)


def _take(connection: Connection, limit: int) -> list[Any]:
    if connection.dialect.name == "postgresql":
        if not connection.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK}).scalar():
            return []  # another process is folding: its turn
        return sorted(connection.execute(_TAKE, {"limit": limit}), key=lambda r: r.id)
    events = list(
        connection.execute(
            select(
                AnalyticsEvent.id,
                AnalyticsEvent.message_id,
                AnalyticsEvent.measure,
                AnalyticsEvent.occurred_at,
            )
            .order_by(AnalyticsEvent.id)
            .limit(limit)
        )
    )
    if events:
        connection.execute(delete(AnalyticsEvent).where(AnalyticsEvent.id <= events[-1].id))
    return events


_MESSAGE_COLUMNS = (
    "id, channel, template_key, rule_id, event_type, experiment_id, variant, provider, created_at, send_at"
)


def _messages(connection: Connection, ids: Sequence[str]) -> dict[str, analytics.Message]:
    if connection.dialect.name == "postgresql":
        # One array parameter, not thousands of bound ones.
        rows = connection.execute(
            text(f"SELECT {_MESSAGE_COLUMNS} FROM notification_logs WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
    else:
        t = NotificationLog
        rows = connection.execute(
            select(
                t.id,
                t.channel,
                t.template_key,
                t.rule_id,
                t.event_type,
                t.experiment_id,
                t.variant,
                t.provider,
                t.created_at,
                t.send_at,
            ).where(t.id.in_(ids))
        )
    return {row.id: analytics.Message.of(row) for row in rows}


def _counted(connection: Connection, ids: Sequence[str]) -> dict[str, int]:
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            text("SELECT message_id, counted FROM analytics_counted WHERE message_id = ANY(:ids)"),
            {"ids": list(ids)},
        )
    else:
        c = AnalyticsCounted
        rows = connection.execute(select(c.message_id, c.counted).where(c.message_id.in_(ids)))
    return {row.message_id: row.counted for row in rows}


def _save_counted(connection: Connection, counted: dict[str, int], before: dict[str, int]) -> None:
    changed = {m: bits for m, bits in counted.items() if before.get(m) != bits}
    if not changed:
        return
    now = utcnow()
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                """
                INSERT INTO analytics_counted (message_id, counted, created_at)
                SELECT m, c, :now FROM unnest(CAST(:ids AS text[]), CAST(:bits AS integer[])) AS v(m, c)
                ON CONFLICT (message_id) DO UPDATE SET counted = excluded.counted
                """
            ),
            {"ids": list(changed), "bits": list(changed.values()), "now": now},
        )
        return
    statement = sqlite.insert(AnalyticsCounted)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["message_id"], set_={"counted": statement.excluded.counted}
        ),
        [{"message_id": m, "counted": bits, "created_at": now} for m, bits in changed.items()],
    )


_HISTOGRAMS = ("time_to_deliver", "time_to_read")


def _raise_postgresql(
    connection: Connection, table: Table, tallies: dict[analytics.Key, analytics.Tally]
) -> None:
    """One upsert: the rows as arrays, each counter added and each histogram merged by the
    database (``analytics_merge``, revision 0020)."""
    columns = ("bucket", *DIMENSIONS, *COUNTERS, *_HISTOGRAMS)
    types = ("timestamptz", *("text" for _ in DIMENSIONS), *("bigint" for _ in COUNTERS), "text", "text")
    values: dict[str, list[Any]] = {name: [] for name in columns}
    for (bucket, dims), tally in tallies.items():
        values["bucket"].append(bucket)
        for name, value in zip(DIMENSIONS, dims, strict=True):
            values[name].append(value)
        for name in COUNTERS:
            values[name].append(tally.counts.get(name, 0))
        values["time_to_deliver"].append(json.dumps(tally.time_to_deliver))
        values["time_to_read"].append(json.dumps(tally.time_to_read))
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in zip(columns, types, strict=True))
    selected = ", ".join((*columns[:-2], *(f"{name}::jsonb" for name in _HISTOGRAMS)))
    added = ", ".join(
        (
            *(f"{name} = t.{name} + excluded.{name}" for name in COUNTERS),
            *(f"{name} = analytics_merge(t.{name}, excluded.{name})" for name in _HISTOGRAMS),
        )
    )
    key = ", ".join(("bucket", *DIMENSIONS))
    connection.execute(
        text(
            f"INSERT INTO {table.name} AS t ({', '.join(columns)}) "
            f"SELECT {selected} FROM unnest({arrays}) AS v({', '.join(columns)}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {added}"
        ),
        values,
    )


def _raise(connection: Connection, table: Table, tallies: dict[analytics.Key, analytics.Tally]) -> None:
    """Add ``tallies`` to their rollup rows."""
    if not tallies:
        return
    if connection.dialect.name == "postgresql":
        _raise_postgresql(connection, table, tallies)
        return
    # SQLite: read, add and write back (the only writer).
    columns = [table.c.bucket, *(table.c[d] for d in DIMENSIONS)]
    keys = [(bucket, *dims) for bucket, dims in tallies]
    existing: dict[tuple[Any, ...], Any] = {}
    for start in range(0, len(keys), 500):
        for row in connection.execute(select(table).where(tuple_(*columns).in_(keys[start : start + 500]))):
            existing[(row.bucket, *(row._mapping[d] for d in DIMENSIONS))] = row
    rows: list[dict[str, Any]] = []
    for (bucket, dims), tally in tallies.items():
        old = existing.get((bucket, *dims))
        new: dict[str, Any] = {"bucket": bucket, **dict(zip(DIMENSIONS, dims, strict=True))}
        for name in COUNTERS:
            new[name] = (old._mapping[name] if old is not None else 0) + tally.counts.get(name, 0)
        for name in _HISTOGRAMS:
            merged = dict(old._mapping[name]) if old is not None else {}
            new[name] = analytics.merge(merged, getattr(tally, name))
        rows.append(new)
    statement = sqlite.insert(table)
    updated = {name: statement.excluded[name] for name in (*COUNTERS, *_HISTOGRAMS)}
    connection.execute(
        statement.on_conflict_do_update(index_elements=[c.name for c in columns], set_=updated),
        rows,
    )


def fold_batch(connection: Connection, limit: int = FOLD_BATCH) -> int:
    """Fold up to ``limit`` events in the transaction under way; returns how many were taken."""
    events = _take(connection, limit)
    if not events:
        return 0
    ids = sorted({e.message_id for e in events})
    counted_rows = connection.execute(
        select(AnalyticsCounted.message_id, AnalyticsCounted.counted).where(
            AnalyticsCounted.message_id.in_(ids)
        )
    )
    before = {row.message_id: row.counted for row in counted_rows}
    messages = _messages(connection, ids)
    fold = analytics.Fold()
    for event in events:
        message = messages.get(event.message_id)
        if message is None:
            continue  # the message is gone (purged): nothing to count it by
        at: datetime = event.occurred_at
        fold.add(event.message_id, message, event.measure, at, before.get(event.message_id, 0))
    _save_counted(connection, fold.counted, before)
    _raise(connection, AnalyticsHourly.__table__, fold.hourly)  # type: ignore[arg-type]
    _raise(connection, AnalyticsDaily.__table__, fold.daily)  # type: ignore[arg-type]
    return len(events)


def fold(settings: Settings, limit: int = FOLD_BATCH) -> int:
    """One batch in its own transaction; returns how many events it took."""
    with system_scope(settings.database_url) as session:
        return fold_batch(session.connection(), limit)


class AnalyticsFoldMiddleware(EventsDuty):
    name = "analytics_fold"

    def step(self, broker: dramatiq.Broker) -> bool:
        backlog = fold(self.settings) >= FOLD_BATCH
        if not backlog:
            experiments.promote_significant(self.settings)
        return backlog
