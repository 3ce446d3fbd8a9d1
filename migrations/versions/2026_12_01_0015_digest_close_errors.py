"""Digests: a digest that cannot be closed is set aside with the reason.

A due digest whose message cannot be made (its rule names a channel this version does not
know, a bug) used to roll back the whole closing transaction, so it came back first on every
tick and held back the digests due after it. It now ends ``failed`` with ``error`` saying
why, alone; the event status shows both. A nullable column without a default: adding it
rewrites no row.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-01 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digest_buckets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digest_buckets", schema=None) as batch_op:
        batch_op.drop_column("error")
