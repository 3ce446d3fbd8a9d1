"""Row-level security: on every table with a ``user_id``, the application role sees and
changes only the rows of the user it acts for, even with raw SQL that has no
``WHERE user_id = …`` at all; acting for nobody it sees nothing; rows that belong to no user
are the system's alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.models import Base, utcnow
from shared.db.rls import system_scope, user_scope
from shared.db.session import session_scope

NOW = utcnow()

#: A minimal row of each per-user table, for a user (None: a row tied to no user). The
#: table's primary key is derived from the user so that rows never collide.
ROWS: dict[str, Callable[[str | None], dict[str, Any]]] = {
    "notification_logs": lambda user: {
        "id": f"message-of-{user}",
        "user_id": user,
        "channel": "email",
        "status": "queued",
        "recipient": f"{user}@example.com",
        "payload": '{"subject": "private"}',
        "max_attempts": 3,
        "created_at": NOW,
        "updated_at": NOW,
    },
    "event_logs": lambda user: {
        "id": f"event-of-{user}",
        "user_id": user,
        "event_type": "order.shipped",
        "data": '{"address": "private"}',
        "status": "queued",
        "created_at": NOW,
    },
    "user_contacts": lambda user: {
        "user_id": user,
        "email": f"{user}@example.com",
        "created_at": NOW,
        "updated_at": NOW,
    },
    "user_notification_preferences": lambda user: {
        "user_id": user,
        "event_preferences": "{}",
        "created_at": NOW,
        "updated_at": NOW,
    },
    "notifications": lambda user: {
        "id": f"notification-of-{user}",
        "user_id": user,
        "title": "private",
        "message": "private",
        "type": "info",
        "data": "{}",
        "created_at": NOW,
    },
    "digest_buckets": lambda user: {
        "id": f"bucket-of-{user}",
        "rule_id": "rule",
        "user_id": user,
        "event_type": "order.shipped",
        "digest_key": f"{user} order.shipped",
        "state": "open",
        "closes_at": NOW,
        "created_at": NOW,
    },
    "digest_items": lambda user: {
        "id": f"item-of-{user}",
        "bucket_id": f"bucket-of-{user}",
        "event_id": f"event-of-{user}",
        "user_id": user,
        "data": '{"address": "private"}',
        "occurred_at": NOW,
    },
    "message_receipts": lambda user: {
        "id": f"receipt-of-{user}",
        "message_id": f"message-of-{user}",
        "user_id": user,
        "type": "delivered",
        "provider": "twilio",
        "dedupe_key": f"twilio:{user}:delivered",
        "occurred_at": NOW,
        "created_at": NOW,
    },
    "push_targets": lambda user: {
        "id": f"device-of-{user}",
        "user_id": user,
        "kind": "fcm",
        "token": f"token-of-{user}",
        "created_at": NOW,
    },
}

#: Rows another table's rows point to, seeded first: a receipt's message.
PARENTS = {"message_receipts": "notification_logs"}

#: Tables whose rows may belong to no user (a message or event sent without a user id).
SHARED_ROWS = {"notification_logs", "event_logs"}


def _nobody_last(user: str | None) -> tuple[bool, str]:
    return user is None, user or ""


def per_user_tables() -> set[str]:
    return {t.name for t in Base.metadata.sorted_tables if "user_id" in t.columns}


def insert(session: Session, table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    session.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)


def seed(settings: Settings, table: str) -> None:
    with system_scope(settings.database_url) as session:
        for user in ("alice", "bob"):
            if table in PARENTS:
                insert(session, PARENTS[table], ROWS[PARENTS[table]](user))
            insert(session, table, ROWS[table](user))
        if table in SHARED_ROWS:
            insert(session, table, ROWS[table](None))


def rowcount(session: Session, sql: str, **params: Any) -> int:
    return int(session.execute(text(sql), params).rowcount)  # type: ignore[attr-defined]


def delete_all(session: Session, table: str) -> int | str:
    """Rows a ``DELETE`` without a filter removes, or "not granted" when the role may not."""
    return granted_rowcount(session, f"DELETE FROM {table}")


def update_all(session: Session, table: str) -> int | str:
    """Rows an ``UPDATE`` without a filter touches, or "not granted" when the role may not."""
    return granted_rowcount(session, f"UPDATE {table} SET user_id = user_id")


def granted_rowcount(session: Session, sql: str) -> int | str:
    try:
        with session.begin_nested():
            return rowcount(session, sql)
    except ProgrammingError as exc:
        assert "permission denied" in str(exc)
        return "not granted"


def refused(scope: Callable[[], Any], write: Callable[[Session], Any]) -> bool:
    """True when PostgreSQL refuses ``write`` by row-level security."""
    try:
        with scope() as session:
            write(session)
    except ProgrammingError as exc:
        assert "row-level security" in str(exc)
        return True
    return False


def test_every_per_user_table_is_covered() -> None:
    """A new table with a user_id must join ROWS (and get a policy) to pass."""
    assert per_user_tables() == set(ROWS)


def test_every_per_user_table_has_row_level_security_forced(settings: Settings) -> None:
    with system_scope(settings.database_url) as session:
        flags = {
            row.relname: (row.relrowsecurity, row.relforcerowsecurity)
            for row in session.execute(
                text(
                    "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relname = ANY(:names)"
                ),
                {"names": list(ROWS)},
            )
        }
    assert flags == {table: (True, True) for table in ROWS}


@pytest.mark.parametrize("table", sorted(ROWS))
def test_raw_sql_without_a_user_filter_reaches_only_the_acting_user(settings: Settings, table: str) -> None:
    """Given rows of alice and bob (and, where allowed, one of no user), when alice's
    transaction selects, updates and deletes every row and inserts or moves a row to bob,
    then only her own row is seen and touched and both writes for bob are refused; acting
    for nobody sees and touches nothing; bob's row and the system's are intact. Where the
    application role may not delete at all (the code never does), deleting is refused."""
    seed(settings, table)
    url = settings.database_url
    with session_scope(url) as session:
        deletable, updatable = session.execute(
            text("SELECT has_table_privilege(:table, 'DELETE'), has_table_privilege(:table, 'UPDATE')"),
            {"table": table},
        ).one()

    def as_alice() -> Any:
        return user_scope(url, "alice")

    with as_alice() as session:
        seen = sorted(session.execute(text(f"SELECT user_id FROM {table}")).scalars())
        updated = update_all(session, table)
    insert_for_bob = refused(as_alice, lambda s: insert(s, table, ROWS[table]("bob-2")))
    move_to_bob = (
        refused(as_alice, lambda s: s.execute(text(f"UPDATE {table} SET user_id = 'bob'")))
        if updatable
        else "not granted"
    )
    with session_scope(url) as session:
        unscoped = (
            session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one(),
            update_all(session, table),
            delete_all(session, table),
        )
    with as_alice() as session:
        deleted = delete_all(session, table)
    with system_scope(url) as session:
        left = sorted(session.execute(text(f"SELECT user_id FROM {table}")).scalars(), key=_nobody_last)

    assert {
        "alice sees": seen,
        "alice updates": updated,
        "alice inserts for bob": "refused" if insert_for_bob else "allowed",
        "alice gives her row to bob": move_to_bob
        if move_to_bob == "not granted"
        else "refused"
        if move_to_bob
        else "allowed",
        "nobody sees, updates, deletes": unscoped,
        "alice deletes": deleted,
        "left for the system": left,
    } == {
        "alice sees": ["alice"],
        "alice updates": 1 if updatable else "not granted",
        "alice inserts for bob": "refused",
        "alice gives her row to bob": "refused" if updatable else "not granted",
        "nobody sees, updates, deletes": (
            0,
            0 if updatable else "not granted",
            0 if deletable else "not granted",
        ),
        "alice deletes": 1 if deletable else "not granted",
        "left for the system": (["bob", None] if table in SHARED_ROWS else ["bob"])
        if deletable
        else ["alice", "bob"],
    }


def test_the_application_role_is_neither_owner_nor_superuser(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        row = session.execute(
            text(
                "SELECT r.rolsuper, r.rolbypassrls, t.tableowner = current_user AS owns "
                "FROM pg_roles r, pg_tables t WHERE r.rolname = current_user "
                "AND t.tablename = 'user_notification_preferences'"
            )
        ).one()
    assert (row.rolsuper, row.rolbypassrls, row.owns) == (False, False, False)


def test_the_acting_user_does_not_leak_to_the_next_transaction(settings: Settings) -> None:
    seed(settings, "notifications")
    with user_scope(settings.database_url, "alice") as session:
        session.execute(text("SELECT 1"))

    with session_scope(settings.database_url) as session:
        assert session.scalar(text("SELECT current_setting('app.user_id', true)")) in (None, "")
        assert session.scalar(text("SELECT count(*) FROM notifications")) == 0
