"""Escalation: each later step also names the step just before it.

``notDelivered`` and ``failed`` are conditions on the earlier step's message (email failed →
SMS), which for the third step and on is not the first step's; ``escalation_after`` names it.
``notRead`` stays on the first (in-app) step, and the cancel on read keeps using
``escalation_of``. Rows written before this revision have none and read the first step, as
they did. A nullable column without a default: adding it rewrites no row.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("escalation_after", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_logs", schema=None) as batch_op:
        batch_op.drop_column("escalation_after")
