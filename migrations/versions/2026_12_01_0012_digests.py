"""Digests and throttling: rules may fold events into one message per window, users may choose
their own cadence, and a rule may cap how many messages a user gets per period.

``digest_buckets`` is one open window per rule and digest key (a partial unique index keeps
it one); ``digest_items`` are the events collected in it, so a restart loses nothing. Both
belong to a user and carry the per-user policy of revision 0005. No foreign keys: a bucket
whose rule was removed closes without a message, and the rows of the two tables are written
and read together, as the system.

Revision ID: 0012
Revises: 0005
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables this revision adds that hold a user's rows.
USER_TABLES = ("digest_buckets", "digest_items")

#: Revision 0005's predicate, repeated rather than imported: a revision must not change when
#: another one is edited.
POLICY_PREDICATE = (
    "current_setting('app.system', true) = 'on' OR user_id = NULLIF(current_setting('app.user_id', true), '')"
)

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", JSON_DOC, nullable=True))
        batch_op.add_column(sa.Column("throttle", JSON_DOC, nullable=True))
    with op.batch_alter_table("user_notification_preferences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest_preferences", JSON_DOC, nullable=True))
    op.create_table(
        "digest_buckets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("rule_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("digest_key", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("max_items", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_digest_buckets"),
    )
    op.create_index(
        "uq_digest_buckets_open_key",
        "digest_buckets",
        ["rule_id", "digest_key"],
        unique=True,
        postgresql_where=sa.text("state = 'open'"),
        sqlite_where=sa.text("state = 'open'"),
    )
    op.create_index("ix_digest_buckets_state_closes_at", "digest_buckets", ["state", "closes_at"])
    op.create_table(
        "digest_items",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("bucket_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("data", JSON_DOC, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_digest_items"),
        sa.UniqueConstraint("bucket_id", "event_id", name="uq_digest_items_bucket_event"),
    )
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite (the embedded default) has no row-level security
    for table in USER_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_per_user ON {table} "
            f"USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})"
        )


def downgrade() -> None:
    op.drop_table("digest_items")
    op.drop_index("ix_digest_buckets_state_closes_at", table_name="digest_buckets")
    op.drop_index("uq_digest_buckets_open_key", table_name="digest_buckets")
    op.drop_table("digest_buckets")
    with op.batch_alter_table("user_notification_preferences", schema=None) as batch_op:
        batch_op.drop_column("digest_preferences")
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.drop_column("throttle")
        batch_op.drop_column("digest")
