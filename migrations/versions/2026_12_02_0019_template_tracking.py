"""Engagement tracking per template: an email version may ask for a tracking pixel (opens)
and for its links to go through the click redirect (clicks). Off by default, and for every
version saved before.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("track_opens", "track_clicks"):
        op.add_column(
            "message_templates",
            sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.text("false")),
        )


def downgrade() -> None:
    for column in ("track_opens", "track_clicks"):
        op.drop_column("message_templates", column)
