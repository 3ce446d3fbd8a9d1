"""Scheduled sends: when the sender asked a message to go, and in which time zone.

``due_at`` already holds a message back until the scheduler publishes it, but it is cleared
once the message goes; ``send_at`` keeps the time the sender asked for, and
``send_at_zone`` the zone a ``{"localTime": "09:00"}`` was read in, so the status can say
both. Nullable columns without defaults: adding them rewrites no row.

Revision ID: 0010
Revises: 0001
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "notification_logs"


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("send_at_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("send_at_zone")
        batch_op.drop_column("send_at")
