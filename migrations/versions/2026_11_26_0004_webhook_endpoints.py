"""Webhook endpoints: per-attempt timing phases, cursor paging of an endpoint's attempts, and
an owner address told when the endpoint is disabled.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("webhook_delivery_logs") as batch:
        batch.add_column(sa.Column("timings", JSON_DOC, nullable=True))
    op.create_index(
        "ix_webhook_delivery_logs_configuration_id_id",
        "webhook_delivery_logs",
        ["configuration_id", "id"],
    )
    with op.batch_alter_table("webhook_configurations") as batch:
        batch.add_column(sa.Column("owner_email", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_configurations") as batch:
        batch.drop_column("owner_email")
    op.drop_index("ix_webhook_delivery_logs_configuration_id_id", table_name="webhook_delivery_logs")
    with op.batch_alter_table("webhook_delivery_logs") as batch:
        batch.drop_column("timings")
