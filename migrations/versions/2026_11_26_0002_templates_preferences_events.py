"""Templates, preferences and events: the ``user_contacts`` table, ``event_logs.rescued_at``
(events the broker lost are published again, at most once per RESCUE_AFTER), and row-level
security on the per-user tables (``user_notification_preferences``, ``notifications``) on
PostgreSQL.

The policies let a transaction see a row only when it acts for the row's user
(``app.user_id``) or explicitly as the system (``app.system = 'on'``, workers acting across
users); see ``shared/db/rls.py``. ``FORCE`` applies them to the tables' owner too; only
superusers and ``BYPASSRLS`` roles skip them, so the application must not use such a role.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables holding one user's rows, isolated per user.
USER_TABLES = ("user_notification_preferences", "notifications")

#: A row is visible to its own user and to code acting as the system, nobody else.
POLICY_PREDICATE = (
    "current_setting('app.system', true) = 'on' OR user_id = NULLIF(current_setting('app.user_id', true), '')"
)


def upgrade() -> None:
    op.create_table(
        "user_contacts",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_contacts")),
    )
    with op.batch_alter_table("event_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rescued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_event_logs_queued_created_at",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in USER_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_per_user ON {table} "
            f"USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in USER_TABLES:
            op.execute(f"DROP POLICY IF EXISTS {table}_per_user ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    with op.batch_alter_table("event_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_event_logs_queued_created_at")
        batch_op.drop_column("rescued_at")
    op.drop_table("user_contacts")
