"""In-app notifications remember when their user's inbox first showed them (``seen_at``).

The inbox reports what it displayed (``POST /api/notifications/seen``); reading or clicking a
notification implies it was seen. A notification read before this revision was seen by then:
its ``seen_at`` is its ``read_at``, so "seen" never counts fewer notifications than "read".
The column is nullable without a default, so adding it rewrites no row; the backfill updates
only read rows.

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE notifications SET seen_at = read_at WHERE read_at IS NOT NULL AND seen_at IS NULL")


def downgrade() -> None:
    op.drop_column("notifications", "seen_at")
