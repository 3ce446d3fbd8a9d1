"""Latency histograms in the rollups are kept as counts per bucket instead of
``{"<bucket>": count}`` documents. PostgreSQL stores them packed (little-endian 64-bit
fields in a ``bytea``, shared.db.histograms): the server sends one value per histogram and
Python reads it as one integer, where decoding the JSON objects and adding them key by key
was most of the analytics query's time. SQLite keeps JSON, now a list. The folder adds
histograms itself (it is the rollups' only writer), so ``analytics_merge`` goes.

Revision ID: 0023
Revises: 0020
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("analytics_hourly", "analytics_daily")
HISTOGRAMS = ("time_to_deliver", "time_to_read")

#: The conversions, as functions for the time of the migration (a column's USING clause may
#: not hold a subquery).
#: ``int8send`` writes big-endian: each field's bytes are reversed.
LITTLE_ENDIAN = " || ".join(f"substring(b FROM {i} FOR 1)" for i in range(8, 0, -1))
TO_BYTES = f"""
    CREATE FUNCTION pg_temp.histogram_bytes(h jsonb) RETURNS bytea LANGUAGE sql AS $$
        SELECT COALESCE(string_agg({LITTLE_ENDIAN}, ''::bytea ORDER BY i), '')
        FROM generate_series(0, COALESCE((SELECT max(k::int) FROM jsonb_object_keys(h) AS k), -1)) AS i,
             int8send(COALESCE((h ->> i::text)::bigint, 0)) AS b
    $$
"""
TO_OBJECT = f"""
    CREATE FUNCTION pg_temp.histogram_object(h bytea) RETURNS jsonb LANGUAGE sql AS $$
        SELECT COALESCE(jsonb_object_agg(i, n), '{{}}'::jsonb)
        FROM (
            SELECT i, ('x' || encode({LITTLE_ENDIAN}, 'hex'))::bit(64)::bigint AS n
            FROM generate_series(0, length(h) / 8 - 1) AS i, substring(h FROM i * 8 + 1 FOR 8) AS b
        ) AS counts
        WHERE n <> 0
    $$
"""
MERGE = """
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgresql(TO_BYTES, "pg_temp.histogram_bytes", "bytea")
        op.execute("DROP FUNCTION analytics_merge(jsonb, jsonb)")
    else:
        _sqlite(_list)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgresql(TO_OBJECT, "pg_temp.histogram_object", "jsonb")
        op.execute(MERGE)
    else:
        _sqlite(_object)


def _postgresql(function: str, name: str, kind: str) -> None:
    op.execute(function)
    for table in TABLES:
        changes = ", ".join(f"ALTER COLUMN {c} TYPE {kind} USING {name}({c})" for c in HISTOGRAMS)
        op.execute(f"ALTER TABLE {table} {changes}")
    op.execute(f"DROP FUNCTION {name}")


def _sqlite(convert: Callable[[str | None], list[int] | dict[str, int]]) -> None:
    """The column stays JSON (a batch rebuild would drop the analytics triggers): only its
    documents change shape."""
    connection = op.get_bind()
    assignments = ", ".join(f"{c} = :{c}" for c in HISTOGRAMS)
    for table in TABLES:
        rows = connection.execute(sa.text(f"SELECT rowid, {', '.join(HISTOGRAMS)} FROM {table}")).all()
        for rowid, *stored in rows:
            converted = {c: json.dumps(convert(h)) for c, h in zip(HISTOGRAMS, stored, strict=True)}
            connection.execute(
                sa.text(f"UPDATE {table} SET {assignments} WHERE rowid = :rowid"),
                {"rowid": rowid, **converted},
            )


def _list(stored: str | None) -> list[int]:
    found = {int(k): int(v) for k, v in json.loads(stored or "{}").items()}
    counts = [0] * (max(found) + 1 if found else 0)
    for index, count in found.items():
        counts[index] += count
    return counts


def _object(stored: str | None) -> dict[str, int]:
    return {str(i): n for i, n in enumerate(json.loads(stored or "[]")) if n}
