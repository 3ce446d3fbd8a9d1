"""Sessions that say whom they act for, so PostgreSQL row-level security can isolate users.

Every table with a ``user_id`` carries a policy (revisions 0002 and 0005:
``user_notification_preferences``, ``notifications``, ``notification_logs``, ``event_logs``,
``user_contacts``) that shows a transaction only the rows of ``app.user_id``, or every row
when ``app.system`` is ``on``. A row whose ``user_id`` is NULL belongs to no user: only the
system sees it. A plain :func:`~shared.db.session.session_scope` sets neither and sees none
of those rows: forgetting to say whom you act for fails closed. It remains the session for
the tables no user owns (templates, rules, webhook endpoints and their delivery logs).

- :func:`user_scope` — request paths acting for one user (and workers handling that user's
  message): a query that forgets its ``WHERE user_id = …`` still sees only that user.
- :func:`system_scope` — code that must act across users: the producer recording messages
  and events (idempotency keys are unique across users), workers claiming and recording
  deliveries, the scheduler, event processing and rescue, retention, the dead-letter and
  status tools, and status lookups made with a server key. Grep for it to review every
  such path.

Each scope costs one statement (``set_config``) at the start of its transaction.

Both settings are transaction-local (``set_config(..., true)``), so nothing leaks to the
next borrower of a pooled connection. On SQLite (the embedded default) there is no RLS and
both are plain sessions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from shared.db.session import async_transaction, session_scope

#: The settings the policies read.
USER_SETTING = "app.user_id"
SYSTEM_SETTING = "app.system"


def _set_local(session: Session, name: str, value: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # set_config(..., true) is SET LOCAL with a bound value (SET LOCAL itself cannot take
        # parameters under psycopg 3's server-side binding).
        session.execute(_SET_LOCAL, {"name": name, "value": value})


_SET_LOCAL = text("SELECT set_config(:name, :value, true)")


def act_as_system(connection: Connection) -> None:
    """Make the transaction under way on ``connection`` act as the system (batched writers that
    hold a connection rather than a session)."""
    if connection.dialect.name == "postgresql":
        connection.execute(_SET_LOCAL, {"name": SYSTEM_SETTING, "value": "on"})


@contextmanager
def user_scope(url: str, user_id: str) -> Iterator[Session]:
    """A transaction that sees and writes only ``user_id``'s rows of the per-user tables."""
    if not user_id:
        raise ValueError("user_scope needs a user id")
    with session_scope(url) as session:
        _set_local(session, USER_SETTING, user_id)
        yield session


@asynccontextmanager
async def async_user_scope(url: str, user_id: str) -> AsyncIterator[AsyncConnection]:
    """:func:`user_scope` for asyncio code (the gateway's inbox): a connection in one
    transaction; run synchronous Core queries on it with ``AsyncConnection.run_sync``."""
    if not user_id:
        raise ValueError("user_scope needs a user id")
    async with async_transaction(url) as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(_SET_LOCAL, {"name": USER_SETTING, "value": user_id})
        yield connection


@contextmanager
def system_scope(url: str) -> Iterator[Session]:
    """A transaction acting as the system: every user's rows are visible."""
    with session_scope(url) as session:
        _set_local(session, SYSTEM_SETTING, "on")
        yield session


def scope_for(url: str, user_id: str | None) -> AbstractContextManager[Session]:
    """:func:`user_scope` when acting for a user, else :func:`system_scope`: a server key
    that names a user (``X-User-Id``) reaches only that user's rows."""
    return user_scope(url, user_id) if user_id else system_scope(url)
