"""Row-level security on the remaining per-user tables: ``notification_logs``, ``event_logs``
and ``user_contacts`` (revision 0002 covers ``user_notification_preferences`` and
``notifications``), on PostgreSQL.

The policy is revision 0002's: a row is visible to, and writable by, a transaction acting
for the row's user (``app.user_id``) or acting as the system (``app.system = 'on'``), nobody
else. A row whose ``user_id`` is NULL (a message or event not tied to a user) equals no
user, so only the system sees it. ``FORCE`` applies the policy to the tables' owner too.
Foreign-key checks and cascades (``webhook_delivery_logs`` → ``notification_logs``) are not
subject to it: PostgreSQL runs them outside row-level security.

This revision merges the branches that exist when it was written (0002, 0003, 0004).

Revision ID: 0005
Revises: 0002, 0003, 0004
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The per-user tables this revision isolates.
USER_TABLES = ("notification_logs", "event_logs", "user_contacts")

#: Revision 0002's predicate, repeated rather than imported: a revision must not change when
#: another one is edited.
POLICY_PREDICATE = (
    "current_setting('app.system', true) = 'on' OR user_id = NULLIF(current_setting('app.user_id', true), '')"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite (the embedded default) has no row-level security
    for table in USER_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_per_user ON {table} "
            f"USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in USER_TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_per_user ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
