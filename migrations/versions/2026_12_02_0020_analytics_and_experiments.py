"""Engagement analytics and experiments.

- ``notification_logs`` learns which rule made a message and, when its template was under an
  experiment, which experiment and variant it got: dimensions the analytics group by.
- ``analytics_events`` is an append-only inbox of what happened to messages, filled by
  triggers in the very transaction that changed a message's status (to ``sent``,
  ``delivered`` or ``failed``) or kept a receipt. The writers of those rows therefore need
  no code of their own, and nothing is counted that did not commit. The folder empties it.
- ``analytics_counted`` remembers, per message, which measures were already counted (a bit
  each): an event heard twice, or after a later one, counts once.
- ``analytics_hourly`` and ``analytics_daily`` are the rollups the analytics API reads: per
  bucket (UTC hour, day) and dimensions, one counter per measure and two latency
  histograms.
- ``experiments``: a template's variants, their weights and what became of them.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
#: Every branch that rebuilds ``notification_logs`` on SQLite (batch mode copies the table
#: and loses its triggers) runs before this one adds its trigger.
depends_on: str | Sequence[str] | None = ("0006", "0007", "0008", "0009", "0010", "0011", "0014", "0015")

#: The measures, repeated rather than imported: a revision must not change when the code does.
COUNTERS = (
    "sent",
    "delivered",
    "failed",
    "bounced",
    "complained",
    "opened",
    "clicked",
    "read",
    "seen",
    "unsubscribed",
    "bot_opened",
    "bot_clicked",
)
DIMENSIONS = ("channel", "template", "rule", "event_type", "experiment", "variant", "provider")

#: Only the status changes the analytics count, checked before the trigger's function runs so
#: that a claim (``queued`` → ``processing``) costs nothing.
COUNTED_STATUSES = "('sent', 'delivered', 'failed')"


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _rollup(name: str) -> None:
    op.create_table(
        name,
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(d, sa.String(255), nullable=False, server_default="") for d in DIMENSIONS),
        *(sa.Column(c, sa.BigInteger(), nullable=False, server_default="0") for c in COUNTERS),
        # {"<bucket index>": count} on a logarithmic scale of milliseconds (shared.analytics).
        sa.Column("time_to_deliver", _json(), nullable=False),
        sa.Column("time_to_read", _json(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", *DIMENSIONS, name=f"pk_{name}"),
    )
    op.create_index(
        f"ix_{name}_experiment",
        name,
        ["experiment", "variant"],
        postgresql_where=sa.text("experiment <> ''"),
        sqlite_where=sa.text("experiment <> ''"),
    )


def upgrade() -> None:
    for column in (
        sa.Column("rule_id", sa.String(36), nullable=True),
        sa.Column("experiment_id", sa.String(36), nullable=True),
        sa.Column("variant", sa.String(64), nullable=True),
    ):
        op.add_column("notification_logs", column)
    op.create_table(
        "analytics_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        # A status (``sent``), or a receipt's type with ``.bot`` for a scanner's (``opened.bot``).
        sa.Column("measure", sa.String(40), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_analytics_events"),
    )
    op.create_table(
        "analytics_counted",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("counted", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_analytics_counted"),
    )
    _rollup("analytics_hourly")
    _rollup("analytics_daily")
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("template_key", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        # running → stopped (results kept, nobody assigned) or concluded (a variant promoted).
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("control", sa.String(64), nullable=False),
        sa.Column("variants", _json(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("min_sample", sa.Integer(), nullable=False),
        sa.Column("auto_promote", sa.Boolean(), nullable=False),
        sa.Column("winner", sa.String(64), nullable=True),
        sa.Column("promoted_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
    )
    # One running experiment per template part: a message cannot be in two.
    op.create_index(
        "uq_experiments_running",
        "experiments",
        ["template_key", "channel", "locale"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _postgresql_triggers() -> None:
    # Two latency histograms added key by key: what the folder's upsert adds to a rollup row.
    op.execute(
        """
        CREATE FUNCTION analytics_merge(a jsonb, b jsonb) RETURNS jsonb
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT COALESCE(jsonb_object_agg(key, total), '{}'::jsonb)
            FROM (
                SELECT key, sum(value::bigint) AS total
                FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b)) AS both_
                GROUP BY key
            ) AS summed
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION analytics_note_status() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO analytics_events (message_id, measure, occurred_at)
            VALUES (NEW.id, NEW.status, NEW.updated_at);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER analytics_status AFTER UPDATE OF status ON notification_logs
        FOR EACH ROW WHEN (NEW.status IN {COUNTED_STATUSES} AND OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION analytics_note_status()
        """
    )
    op.execute(
        """
        CREATE FUNCTION analytics_note_receipt() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO analytics_events (message_id, measure, occurred_at)
            VALUES (
                NEW.message_id,
                NEW.type || CASE WHEN NEW.code LIKE 'bot%' THEN '.bot' ELSE '' END,
                NEW.occurred_at
            );
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER analytics_receipt AFTER INSERT ON message_receipts
        FOR EACH ROW EXECUTE FUNCTION analytics_note_receipt()
        """
    )


def _sqlite_triggers() -> None:
    op.execute(
        f"""
        CREATE TRIGGER analytics_status AFTER UPDATE OF status ON notification_logs
        FOR EACH ROW WHEN NEW.status IN {COUNTED_STATUSES} AND OLD.status IS NOT NEW.status
        BEGIN
            INSERT INTO analytics_events (message_id, measure, occurred_at)
            VALUES (NEW.id, NEW.status, NEW.updated_at);
        END
        """
    )
    op.execute(
        """
        CREATE TRIGGER analytics_receipt AFTER INSERT ON message_receipts
        FOR EACH ROW
        BEGIN
            INSERT INTO analytics_events (message_id, measure, occurred_at)
            VALUES (
                NEW.message_id,
                NEW.type || CASE WHEN NEW.code LIKE 'bot%' THEN '.bot' ELSE '' END,
                NEW.occurred_at
            );
        END
        """
    )


def downgrade() -> None:
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    triggers = (("analytics_status", "notification_logs"), ("analytics_receipt", "message_receipts"))
    for trigger, table in triggers:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (f" ON {table}" if postgresql_ else ""))
    if postgresql_:
        op.execute("DROP FUNCTION IF EXISTS analytics_note_status()")
        op.execute("DROP FUNCTION IF EXISTS analytics_note_receipt()")
        op.execute("DROP FUNCTION IF EXISTS analytics_merge(jsonb, jsonb)")
    op.drop_index("uq_experiments_running", table_name="experiments")
    op.drop_table("experiments")
    for name in ("analytics_daily", "analytics_hourly"):
        op.drop_index(f"ix_{name}_experiment", table_name=name)
        op.drop_table(name)
    op.drop_table("analytics_counted")
    op.drop_table("analytics_events")
    with op.batch_alter_table("notification_logs") as batch:
        for column in ("variant", "experiment_id", "rule_id"):
            batch.drop_column(column)
