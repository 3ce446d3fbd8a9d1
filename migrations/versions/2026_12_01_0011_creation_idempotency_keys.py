"""Idempotency keys of creating requests: ``POST /api/templates``, ``/api/rules`` and
``/api/webhooks/configurations`` honour ``Idempotency-Key`` like the sends do. A key is
unique within its caller's scope; the row names the request that first used it and the
resource it created.

Revision ID: 0011
Revises: 0001
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "creation_idempotency_keys",
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("idempotency_scope", sa.String(64), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", "idempotency_scope", name="pk_creation_idempotency_keys"),
    )


def downgrade() -> None:
    op.drop_table("creation_idempotency_keys")
