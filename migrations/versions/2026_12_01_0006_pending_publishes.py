"""Publishes not yet confirmed: the relay's record of accepted rows whose broker publish may
not have happened (the accepting process died between its commit and the confirm).

Revision ID: 0006
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_publishes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pending_publishes"),
    )
    op.create_index("ix_pending_publishes_created_at", "pending_publishes", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_pending_publishes_created_at", table_name="pending_publishes")
    op.drop_table("pending_publishes")
