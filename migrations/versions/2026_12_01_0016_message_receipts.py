"""Receipts: what providers say about a message after they accepted it.

``message_receipts`` holds one row per thing heard about a message (Twilio's status
callbacks now; bounces, complaints, opens and reads as they are added), normalized to one
vocabulary (``type``) with the provider's own word or code kept beside it (``code``). A
receipt heard twice (a replayed callback) is one row: ``dedupe_key`` is unique. The rows
belong to the message's user and carry revision 0005's per-user policy; they go with their
message (``ON DELETE CASCADE``) and are otherwise never changed.

Revision ID: 0016
Revises: 0005
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "message_receipts"

#: Revision 0005's predicate, repeated rather than imported: a revision must not change when
#: another one is edited.
POLICY_PREDICATE = (
    "current_setting('app.system', true) = 'on' OR user_id = NULLIF(current_setting('app.user_id', true), '')"
)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column(
            "message_id",
            sa.String(36),
            sa.ForeignKey("notification_logs.id", ondelete="CASCADE", name="fk_message_receipts_message"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_message_receipts"),
        sa.UniqueConstraint("dedupe_key", name="uq_message_receipts_dedupe_key"),
    )
    op.create_index("ix_message_receipts_message_id", TABLE, ["message_id", "occurred_at"])
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite (the embedded default) has no row-level security
    op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {TABLE}_per_user ON {TABLE} "
        f"USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})"
    )


def downgrade() -> None:
    op.drop_index("ix_message_receipts_message_id", table_name=TABLE)
    op.drop_table(TABLE)
