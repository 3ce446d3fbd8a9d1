"""Idempotency keys belong to the credential that used them, and remember the request.

A key was unique across the whole table: a caller reusing a key another credential had used
got that caller's message id back and its own message was silently dropped. Keys are now
unique per ``idempotency_scope`` (a server key's fingerprint, a user, the Python API; empty
for the keys the service makes itself, which is what every existing row gets), and
``request_fingerprint`` (SHA-256 of the first request) lets the same key with a different
body be refused instead of answered with the first message's id.

Revision ID: 0007
Revises: 0001
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables whose rows carry caller-chosen idempotency keys.
TABLES = ("notification_logs", "event_logs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "idempotency_scope", sa.String(length=64), server_default=sa.text("''"), nullable=False
                )
            )
            batch_op.add_column(sa.Column("request_fingerprint", sa.String(length=64), nullable=True))
            batch_op.drop_constraint(f"uq_{table}_idempotency_key", type_="unique")
            # The key first: a repeat is looked up by its key alone.
            batch_op.create_unique_constraint(
                f"uq_{table}_idempotency_scope_key", ["idempotency_key", "idempotency_scope"]
            )


def downgrade() -> None:
    # Fails if two scopes hold the same key: which message keeps it is not ours to choose.
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_idempotency_scope_key", type_="unique")
            batch_op.create_unique_constraint(f"uq_{table}_idempotency_key", ["idempotency_key"])
            batch_op.drop_column("request_fingerprint")
            batch_op.drop_column("idempotency_scope")
