"""The publish relay: accepted rows whose broker publish was never confirmed get published.

A message (or event) is accepted in two steps: its row is committed, then its id is
published and confirmed. A process that dies between the two leaves a row nobody will
publish. So the accepting transaction also writes a small ``pending_publishes`` marker,
which the accepting process removes once the broker confirmed; a marker still there
``PUBLISH_RELAY_AFTER`` later is the trace of such a death, and the scheduler of any worker
process publishes its id then (:func:`take_stale`). A marker whose removal was lost (the
process died right after the confirm) only costs one extra broker message, which the
worker's claim recognises as a duplicate.

On the embedded broker the markers are also how producers in other processes reach the one
broker there is, the runner's memory (:mod:`shared.handoff`): the runner takes every marker
at once (:func:`take_waiting`), not only stale ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ARRAY, Connection, String, Table, any_, bindparam, delete, insert, select

from shared.db.models import PendingPublish, utcnow

#: ``pending_publishes.kind`` of a channel message and of an event.
MESSAGE = "message"
EVENT = "event"

_PENDING = cast(Table, PendingPublish.__table__)


@dataclass(frozen=True, slots=True)
class Pending:
    id: str
    kind: str
    queue: str


def pend(connection: Connection, pending: Sequence[Pending]) -> None:
    """Record publishes about to happen, in the transaction that writes their rows."""
    now = utcnow()
    pend_planned(connection, [(p, now) for p in pending])


def pend_planned(connection: Connection, planned: Sequence[tuple[Pending, datetime]]) -> None:
    """Record publishes planned for a time (scheduled sends a scheduler holds until then):
    each marker's age counts from its time, so the relay takes it only
    ``PUBLISH_RELAY_AFTER`` past that time, if the scheduler holding it died."""
    if planned:
        connection.execute(
            insert(_PENDING),
            [{"id": p.id, "kind": p.kind, "queue": p.queue, "created_at": at} for p, at in planned],
        )


def published(connection: Connection, ids: Sequence[str]) -> None:
    """The broker confirmed these: nothing left for the relay."""
    if not ids:
        return
    if connection.dialect.name == "postgresql":
        # One array parameter: a burst's thousands of ids as an IN list of as many parameters
        # cost more to send and plan than the delete itself.
        ids_param = bindparam("ids", list(ids), type_=ARRAY(String))
        connection.execute(delete(_PENDING).where(_PENDING.c.id == any_(ids_param)))
    else:
        connection.execute(delete(_PENDING).where(_PENDING.c.id.in_(list(ids))))


def take_stale(connection: Connection, *, older_than: timedelta, limit: int) -> list[Pending]:
    """Markers older than ``older_than``: their publish never happened. Removed in the caller's
    transaction, which publishes them before it commits (a refused publish rolls back)."""
    cutoff = utcnow() - older_than
    rows = connection.execute(
        select(_PENDING.c.id, _PENDING.c.kind, _PENDING.c.queue)
        .where(_PENDING.c.created_at < cutoff)
        .order_by(_PENDING.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    taken = [Pending(r.id, r.kind, r.queue) for r in rows]
    published(connection, [p.id for p in taken])
    return taken


def take_waiting(connection: Connection, *, limit: int) -> list[Pending]:
    """Up to ``limit`` markers of any age, oldest first, removed as they are read: the
    embedded broker's hand-off. One statement takes and removes them, so two takers never get
    the same marker even without ``FOR UPDATE SKIP LOCKED`` (SQLite has none)."""
    if connection.execute(select(_PENDING.c.id).limit(1)).first() is None:
        return []  # the usual idle poll: one read, and no write lock taken on SQLite
    oldest = select(_PENDING.c.id).order_by(_PENDING.c.created_at).limit(limit)
    rows = connection.execute(
        delete(_PENDING)
        .where(_PENDING.c.id.in_(oldest))
        .returning(_PENDING.c.id, _PENDING.c.kind, _PENDING.c.queue)
    ).all()
    return [Pending(r.id, r.kind, r.queue) for r in rows]
