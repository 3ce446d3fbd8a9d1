"""Initial schema: the eight tables of the product brief, with the indexes their queries use.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 11:51:36.613435
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: JSONB on PostgreSQL, JSON text elsewhere (SQLite, the embedded default).
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_logs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("data", JSON_DOC, nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("matched_rules", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_logs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_event_logs_idempotency_key")),
    )
    with op.batch_alter_table("event_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_logs_event_type_created_at", ["event_type", "created_at"], unique=False
        )

    op.create_table(
        "message_templates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("locale", sa.String(length=35), server_default=sa.text("'en'"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("sms_body", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("action_url", sa.Text(), nullable=True),
        sa.Column("webhook_payload", sa.Text(), nullable=True),
        sa.Column("sample_data", JSON_DOC, nullable=False),
        sa.Column("is_current", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_templates")),
        sa.UniqueConstraint("key", "channel", "locale", "version", name="uq_message_templates_version"),
    )
    with op.batch_alter_table("message_templates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_message_templates_key_current", ["key", "channel", "locale", "is_current"], unique=False
        )

    op.create_table(
        "notification_logs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("event_type", sa.String(length=255), nullable=True),
        sa.Column("event_id", sa.String(length=36), nullable=True),
        sa.Column("template_key", sa.String(length=255), nullable=True),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_logs")),
        sa.UniqueConstraint("idempotency_key", name="uq_notification_logs_idempotency_key"),
    )
    with op.batch_alter_table("notification_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_logs_channel_completed_at", ["channel", "completed_at"], unique=False
        )
        batch_op.create_index(
            "ix_notification_logs_due_at",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("due_at IS NOT NULL"),
        )
        batch_op.create_index("ix_notification_logs_event_id", ["event_id"], unique=False)
        batch_op.create_index(
            "ix_notification_logs_status_updated_at", ["status", "updated_at"], unique=False
        )
        batch_op.create_index(
            "ix_notification_logs_user_id_created_at", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "notification_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("channels", JSON_DOC, nullable=False),
        sa.Column("template_key", sa.String(length=255), nullable=True),
        sa.Column("conditions", JSON_DOC, nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("critical", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("delay_ms", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_rules")),
    )
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_rules_event_type_active", ["event_type", "active"], unique=False
        )

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("notification_log_id", sa.String(length=36), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("action_url", sa.Text(), nullable=True),
        sa.Column("data", JSON_DOC, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("notification_log_id", name=op.f("uq_notifications_notification_log_id")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifications_unread",
            ["user_id"],
            unique=False,
            postgresql_where=sa.text("read_at IS NULL AND deleted_at IS NULL"),
            sqlite_where=sa.text("read_at IS NULL AND deleted_at IS NULL"),
        )
        batch_op.create_index(
            "ix_notifications_user_id_created_at", ["user_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "user_notification_preferences",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("email_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("sms_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_app_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("webhook_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("event_preferences", JSON_DOC, nullable=False),
        sa.Column("quiet_hours_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_hours_end", sa.String(length=5), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_notification_preferences")),
    )
    op.create_table(
        "webhook_configurations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_types", JSON_DOC, nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("headers", JSON_DOC, nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rate_limit_per_second", sa.Integer(), nullable=True),
        sa.Column("max_retries", sa.Integer(), nullable=True),
        sa.Column("retry_schedule_ms", JSON_DOC, nullable=True),
        sa.Column("ordered", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_configurations")),
    )
    with op.batch_alter_table("webhook_configurations", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_configurations_active", ["active"], unique=False)

    op.create_table(
        "webhook_delivery_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("notification_log_id", sa.String(length=36), nullable=False),
        sa.Column("configuration_id", sa.String(length=36), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("request_headers", JSON_DOC, nullable=False),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_headers", JSON_DOC, nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error_class", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=True),
        sa.Column("success", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["webhook_configurations.id"],
            name=op.f("fk_webhook_delivery_logs_configuration_id_webhook_configurations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["notification_log_id"],
            ["notification_logs.id"],
            name=op.f("fk_webhook_delivery_logs_notification_log_id_notification_logs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery_logs")),
    )
    with op.batch_alter_table("webhook_delivery_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_delivery_logs_configuration_id_created_at",
            ["configuration_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_webhook_delivery_logs_notification_log_id", ["notification_log_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_delivery_logs_notification_log_id")
        batch_op.drop_index("ix_webhook_delivery_logs_configuration_id_created_at")

    op.drop_table("webhook_delivery_logs")
    with op.batch_alter_table("webhook_configurations", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_configurations_active")

    op.drop_table("webhook_configurations")
    op.drop_table("user_notification_preferences")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_user_id_created_at")
        batch_op.drop_index(
            "ix_notifications_unread",
            postgresql_where=sa.text("read_at IS NULL AND deleted_at IS NULL"),
            sqlite_where=sa.text("read_at IS NULL AND deleted_at IS NULL"),
        )

    op.drop_table("notifications")
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_rules_event_type_active")

    op.drop_table("notification_rules")
    with op.batch_alter_table("notification_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_logs_user_id_created_at")
        batch_op.drop_index("ix_notification_logs_status_updated_at")
        batch_op.drop_index("ix_notification_logs_event_id")
        batch_op.drop_index("ix_notification_logs_due_at", postgresql_where=sa.text("due_at IS NOT NULL"))
        batch_op.drop_index("ix_notification_logs_channel_completed_at")

    op.drop_table("notification_logs")
    with op.batch_alter_table("message_templates", schema=None) as batch_op:
        batch_op.drop_index("ix_message_templates_key_current")

    op.drop_table("message_templates")
    with op.batch_alter_table("event_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_event_logs_event_type_created_at")

    op.drop_table("event_logs")
