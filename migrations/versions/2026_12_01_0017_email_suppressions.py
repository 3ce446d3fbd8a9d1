"""Email suppressions: addresses no email goes to any more.

An address that bounced hard (the mailbox does not exist) or whose owner complained (marked
a message as spam) is written here when the bounce or the complaint report comes in; the
email workers skip every message to it from then on (``suppressed``), whatever its priority,
until an operator removes the entry. Addresses are stored as the workers compare them:
lowercased. Not a user's row (an address may be several users', or none's): no per-user
policy.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_suppressions",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_email_suppressions"),
    )


def downgrade() -> None:
    op.drop_table("email_suppressions")
