"""Push and chat channels: the devices push reaches, the chat targets of users and rules, and
a switch per new channel in the preferences.

``push_targets`` holds one row per device of a user (a browser's push subscription, an FCM or
APNs token); ``(kind, token)`` is unique, so a device registered again by another user moves
to them. The rows belong to their user and carry revision 0005's per-user policy. Users'
contacts gain a Slack member id and sealed Slack/Teams webhook URLs; rules gain ``chat``
(where their chat messages go). Both preference switches start on, like the others.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "push_targets"

#: Revision 0005's predicate, repeated rather than imported: a revision must not change when
#: another one is edited.
POLICY_PREDICATE = (
    "current_setting('app.system', true) = 'on' OR user_id = NULLIF(current_setting('app.user_id', true), '')"
)

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.Text(), nullable=True),
        sa.Column("auth", sa.Text(), nullable=True),
        sa.Column("app_id", sa.String(255), nullable=True),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_push_targets"),
        sa.UniqueConstraint("kind", "token", name="uq_push_targets_kind_token"),
    )
    op.create_index("ix_push_targets_user_id", TABLE, ["user_id", "created_at"])
    with op.batch_alter_table("user_contacts") as batch:
        batch.add_column(sa.Column("slack_user_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("slack_webhook_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("teams_webhook_url", sa.Text(), nullable=True))
    with op.batch_alter_table("user_notification_preferences") as batch:
        for column in ("push_enabled", "chat_enabled"):
            batch.add_column(sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.text("true")))
    op.add_column("notification_rules", sa.Column("chat", JSON_DOC, nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite (the embedded default) has no row-level security
    op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {TABLE}_per_user ON {TABLE} "
        f"USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})"
    )


def downgrade() -> None:
    op.drop_column("notification_rules", "chat")
    with op.batch_alter_table("user_notification_preferences") as batch:
        batch.drop_column("chat_enabled")
        batch.drop_column("push_enabled")
    with op.batch_alter_table("user_contacts") as batch:
        batch.drop_column("teams_webhook_url")
        batch.drop_column("slack_webhook_url")
        batch.drop_column("slack_user_id")
    op.drop_index("ix_push_targets_user_id", table_name=TABLE)
    op.drop_table(TABLE)
