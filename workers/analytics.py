"""The analytics folder: in every process consuming ``events``, empties ``analytics_events``
into the hourly and daily rollups each scheduler interval (at once again while a backlog
remains), then lets experiments that promote themselves do so.

A batch is one transaction: the events taken, the measures marked counted per message and
the rollups raised commit together, so an event is counted exactly once even if the process
dies mid-batch. One folder works at a time (a transaction-scoped advisory lock on PostgreSQL;
SQLite has one writer anyway): several processes only take turns. On PostgreSQL a batch is a
handful of statements whatever its size (ids and rows go as arrays; the rollups' histograms
are read with one statement and raised, with the counters, by one upsert).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dramatiq
from sqlalchemy import Connection, Table, delete, select, text, tuple_
from sqlalchemy.dialects import sqlite

from shared import analytics
from shared.config import Settings
from shared.db import histograms
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
_KEY = ("bucket", *DIMENSIONS)
_KEY_TYPES = ("timestamptz", *("text" for _ in DIMENSIONS))


def _stored_histograms(
    connection: Connection, table: Table, tallies: dict[analytics.Key, analytics.Tally]
) -> dict[tuple[Any, ...], Any]:
    """The stored histograms of the rollup rows ``tallies`` raise, for those that exist."""
    found = [table.c[name] for name in (*_KEY, *_HISTOGRAMS)]
    keys = [(bucket, *dims) for bucket, dims in tallies]
    rows: list[Any] = []
    if connection.dialect.name == "postgresql":
        # The keys as arrays joined to the table: one statement, a handful of parameters.
        arrays = ", ".join(f"CAST(:k{i} AS {kind}[])" for i, kind in enumerate(_KEY_TYPES))
        statement = text(
            f"SELECT {', '.join(f't.{name}' for name in (*_KEY, *_HISTOGRAMS))} FROM {table.name} AS t "
            f"JOIN unnest({arrays}) AS v({', '.join(_KEY)}) USING ({', '.join(_KEY)})"
        ).columns(*found)
        rows += connection.execute(statement, {f"k{i}": [key[i] for key in keys] for i in range(len(_KEY))})
    else:
        columns = tuple_(*found[: len(_KEY)])
        for start in range(0, len(keys), 500):
            rows += connection.execute(select(*found).where(columns.in_(keys[start : start + 500])))
    return {tuple(row[: len(_KEY)]): row for row in rows}


def _raise(connection: Connection, table: Table, tallies: dict[analytics.Key, analytics.Tally]) -> None:
    """Add ``tallies`` to their rollup rows: the counters by the database, the histograms
    here (read, added, written back). The folder is the rollups' only writer (one at a time,
    under its lock), so nothing changes them between the read and the write."""
    if not tallies:
        return
    stored = _stored_histograms(connection, table, tallies)
    rows: list[dict[str, Any]] = []
    for (bucket, dims), tally in tallies.items():
        row: dict[str, Any] = {"bucket": bucket, **dict(zip(DIMENSIONS, dims, strict=True))}
        for name in COUNTERS:
            row[name] = tally.counts.get(name, 0)
        old = stored.get((bucket, *dims))
        for name in _HISTOGRAMS:
            # Packed integers (shared.db.histograms): adding them adds every bucket.
            row[name] = (old._mapping[name] if old is not None else 0) + histograms.join(getattr(tally, name))
        rows.append(row)
    if connection.dialect.name == "postgresql":
        _upsert_postgresql(connection, table, rows)
        return
    statement = sqlite.insert(table)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={
                **{name: table.c[name] + statement.excluded[name] for name in COUNTERS},
                **{name: statement.excluded[name] for name in _HISTOGRAMS},
            },
        ),
        rows,
    )


def _upsert_postgresql(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """One upsert of every row, its columns as arrays."""
    columns = (*_KEY, *COUNTERS, *_HISTOGRAMS)
    types = (*_KEY_TYPES, *("bigint" for _ in COUNTERS), *("bytea" for _ in _HISTOGRAMS))
    values = {name: [row[name] for row in rows] for name in columns}
    for name in _HISTOGRAMS:
        values[name] = [histograms.to_bytes(packed) for packed in values[name]]
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in zip(columns, types, strict=True))
    added = ", ".join(
        (
            *(f"{name} = t.{name} + excluded.{name}" for name in COUNTERS),
            *(f"{name} = excluded.{name}" for name in _HISTOGRAMS),
        )
    )
    connection.execute(
        text(
            f"INSERT INTO {table.name} AS t ({', '.join(columns)}) "
            f"SELECT * FROM unnest({arrays}) AS v({', '.join(columns)}) "
            f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {added}"
        ),
        values,
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
