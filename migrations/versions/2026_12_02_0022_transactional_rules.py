"""Event rules may be transactional: the messages they send are never tracked (no pixel, no
click redirect), whatever their template asks. Off by default, and for every rule saved
before. Messages carry the flag in their stored payload, so only rules need a column.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notification_rules",
        sa.Column("transactional", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )


def downgrade() -> None:
    op.drop_column("notification_rules", "transactional")
