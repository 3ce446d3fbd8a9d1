"""Index notifications by creation time, for the retention purge.

The purge looks for rows older than the retention age across all users; without this index
that search scans the whole table every time it runs, even when nothing has expired.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_created_at")
