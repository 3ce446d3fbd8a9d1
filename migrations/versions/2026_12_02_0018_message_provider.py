"""Which provider a message went to: a channel may have several (SMTP relays, Twilio
accounts) tried in priority order, and the one its last attempt ended with is kept on the
row. Null for channels with a single unnamed provider (webhooks, in-app) and before the
first attempt.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL adds it without rewriting the table.
    op.add_column("notification_logs", sa.Column("provider", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("notification_logs", "provider")
