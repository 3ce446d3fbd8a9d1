"""Escalation across channels: a rule's ordered steps, and each later step's link to the first.

``notification_rules.steps`` holds a rule's steps (``[{"channel": "in_app"}, {"channel":
"email", "after": "30m", "if": "notRead"}]``). A later step's message waits ``scheduled``
like any scheduled send; ``escalation_of`` names the first step's message, whose state at the
step's due time decides whether it goes, and ``escalation_if`` the condition. The partial
index serves the cancel that reading the first step's notification makes. Nullable columns
without defaults: adding them rewrites no row, and the rows stay under revision 0005's
per-user policy like the rest of their tables.

Revision ID: 0013
Revises: 0005
Create Date: 2026-12-01 16:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0013"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
INDEX = "ix_notification_logs_escalation_of"


def upgrade() -> None:
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("steps", JSON_DOC, nullable=True))
    with op.batch_alter_table("notification_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("escalation_of", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("escalation_if", sa.String(length=16), nullable=True))
    op.create_index(
        INDEX,
        "notification_logs",
        ["escalation_of"],
        postgresql_where=sa.text("escalation_of IS NOT NULL"),
        sqlite_where=sa.text("escalation_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="notification_logs")
    with op.batch_alter_table("notification_logs", schema=None) as batch_op:
        batch_op.drop_column("escalation_if")
        batch_op.drop_column("escalation_of")
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.drop_column("steps")
