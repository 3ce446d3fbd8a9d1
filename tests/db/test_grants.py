"""The application role's grants (the README's recipe, mirrored by the test fixtures): it
reads and writes the application's tables, but cannot touch the migration history, delete
where the code never deletes, rewrite the webhook delivery log, or move a sequence."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import inspect

from shared.db.models import Base
from shared.db.session import get_engine

#: Statements the application role must be refused, each with what it would have let through.
REFUSED = [
    ("UPDATE alembic_version SET version_num = 'forged'", "rewrite the migration history"),
    ("DELETE FROM alembic_version", "erase the migration history"),
    ("INSERT INTO alembic_version VALUES ('forged')", "add to the migration history"),
    ("TRUNCATE notification_logs", "empty a table wholesale"),
    ("DELETE FROM message_templates", "erase template versions queued messages still use"),
    ("DELETE FROM webhook_delivery_logs", "erase the webhook delivery log"),
    ("UPDATE webhook_delivery_logs SET success = true", "rewrite the webhook delivery log"),
    ("SELECT setval('message_templates_id_seq', 1)", "move a sequence back"),
    ("CREATE TABLE planted (id int)", "create objects in the schema"),
]


def plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.parametrize(("statement", "harm"), REFUSED, ids=[r[1] for r in REFUSED])
def test_the_application_role_is_refused(app_database_url: str, statement: str, harm: str) -> None:
    with (
        psycopg.connect(plain_url(app_database_url)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_the_migration_history_is_untouched_and_readable_by_the_owner(
    database_url: str, app_database_url: str
) -> None:
    with (
        psycopg.connect(plain_url(app_database_url)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("UPDATE alembic_version SET version_num = 'forged'")
    with psycopg.connect(plain_url(database_url)) as conn:
        versions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    assert versions and "forged" not in versions


def test_every_application_table_is_granted(database_url: str, app_database_url: str) -> None:
    """A table added by a migration but missing from the recipe would fail only where the
    code first touches it: every table of the models is readable by the application role."""
    tables = set(Base.metadata.tables)
    assert tables <= set(inspect(get_engine(database_url)).get_table_names())
    with psycopg.connect(plain_url(app_database_url)) as conn:
        granted = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.role_table_grants"
                " WHERE grantee = current_user AND privilege_type = 'SELECT'"
            )
        }
    assert tables <= granted, f"not granted to the application role: {sorted(tables - granted)}"
