"""Indexes for the message log (``GET /api/messages``), read newest first.

The log is paged by keyset on ``(created_at, id)``, descending. Each common way of reading
it gets an index ending in those two columns, so a page is one index range read in order
that stops after ``limit`` rows, however large the table:

- nothing filtered: ``(created_at, id)``;
- by status: ``(status, created_at, id)``;
- by channel: ``(channel, created_at, id)``;
- by user: ``(user_id, created_at, id)``, which replaces ``(user_id, created_at)``: it
  serves every query the narrower one did.

Rarer filters (event type, template, a time window) ride on these and are checked row by
row. Row-level security (revision 0005) needs nothing here: an index holds every row and
the policy filters what a scan returns.

On PostgreSQL the indexes are built ``CONCURRENTLY``: ``notification_logs`` takes every
send, and a plain ``CREATE INDEX`` would hold its writes for the whole build. That cannot
run inside a transaction, so this revision first commits the revisions applied before it.

Revision ID: 0009
Revises: 0001
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

from alembic import op

revision: str = "0009"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "notification_logs"

#: The new indexes by name, with their columns.
INDEXES = {
    "ix_notification_logs_created_at_id": ["created_at", "id"],
    "ix_notification_logs_status_created_at_id": ["status", "created_at", "id"],
    "ix_notification_logs_channel_created_at_id": ["channel", "created_at", "id"],
    "ix_notification_logs_user_id_created_at_id": ["user_id", "created_at", "id"],
}
#: The index the user one replaces.
NARROW_USER_INDEX: tuple[str, list[str]] = (
    "ix_notification_logs_user_id_created_at",
    ["user_id", "created_at"],
)


def _outside_a_transaction() -> AbstractContextManager[object]:
    """PostgreSQL builds and drops indexes concurrently only outside a transaction; SQLite
    (the embedded default) has no concurrent builds and stays in its transaction."""
    if op.get_bind().dialect.name == "postgresql":
        return op.get_context().autocommit_block()
    return nullcontext()


def upgrade() -> None:
    with _outside_a_transaction():
        _create(INDEXES)
        op.drop_index(NARROW_USER_INDEX[0], table_name=TABLE, postgresql_concurrently=True)


def downgrade() -> None:
    with _outside_a_transaction():
        _create(dict([NARROW_USER_INDEX]))
        for name in INDEXES:
            op.drop_index(name, table_name=TABLE, postgresql_concurrently=True)


def _create(indexes: dict[str, list[str]]) -> None:
    for name, columns in indexes.items():
        op.create_index(name, TABLE, columns, unique=False, postgresql_concurrently=True)
