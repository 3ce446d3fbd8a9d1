"""Row-level security: the application role sees only the rows of the user it acts for,
even when a query forgets its ``WHERE user_id = …``."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import ProgrammingError

from shared.config import Settings
from shared.db.models import Notification, UserNotificationPreference, utcnow
from shared.db.rls import system_scope, user_scope
from shared.db.session import session_scope


def seed(settings: Settings) -> None:
    with system_scope(settings.database_url) as session:
        for user in ("alice", "bob"):
            session.add(UserNotificationPreference(user_id=user, event_preferences={}, sms_enabled=False))
            session.add(
                Notification(
                    id=f"n-{user}", user_id=user, title="t", message="m", data={}, created_at=utcnow()
                )
            )


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


def test_a_query_without_a_where_clause_sees_only_the_acting_user(settings: Settings) -> None:
    """Given rows of alice and bob, when alice's transaction selects every row, then it gets
    only hers, on both per-user tables."""
    seed(settings)

    with user_scope(settings.database_url, "alice") as session:
        preferences = session.scalars(select(UserNotificationPreference)).all()
        inbox = session.scalars(select(Notification)).all()
        raw = session.execute(text("SELECT user_id FROM user_notification_preferences")).scalars().all()

    assert [p.user_id for p in preferences] == ["alice"]
    assert [n.user_id for n in inbox] == ["alice"]
    assert raw == ["alice"]


def test_a_user_cannot_write_another_users_rows(settings: Settings) -> None:
    seed(settings)

    with user_scope(settings.database_url, "alice") as session:
        changed = session.execute(text("UPDATE notifications SET title = 'pwned'")).rowcount  # type: ignore[attr-defined]
    assert changed == 1  # alice's own row only
    with pytest.raises(ProgrammingError, match="row-level security"):  # noqa: SIM117
        with user_scope(settings.database_url, "alice") as session:
            session.add(UserNotificationPreference(user_id="bob-2", event_preferences={}))
            session.flush()
    with system_scope(settings.database_url) as session:
        titles = {
            row.user_id: row.title
            for row in session.execute(select(Notification.user_id, Notification.title))
        }
    assert titles == {"alice": "pwned", "bob": "t"}


def test_a_session_acting_for_nobody_sees_nothing(settings: Settings) -> None:
    """Forgetting to say whom a transaction acts for fails closed."""
    seed(settings)

    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(UserNotificationPreference)) == 0
        assert session.scalar(select(func.count()).select_from(Notification)) == 0
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 2


def test_the_acting_user_does_not_leak_to_the_next_transaction(settings: Settings) -> None:
    seed(settings)
    with user_scope(settings.database_url, "alice") as session:
        session.execute(select(1))

    with session_scope(settings.database_url) as session:
        assert session.scalar(text("SELECT current_setting('app.user_id', true)")) in (None, "")
        assert session.scalar(select(func.count()).select_from(Notification)) == 0
