"""The message log's queries on PostgreSQL: every common way of reading it (unfiltered, by
status, channel or user, as the system or acting for a user, first page or later) is one
index scan in newest-first order, with no sort, so a page costs the same on any table size.

The test table is small, where PostgreSQL rightly prefers a sequential scan; plans are
taken with sequential and bitmap scans priced out, which leaves a sort-free index scan
only if an index serves the order."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from producer import message_log
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import scope_for
from shared.db.session import get_engine

USER_INDEX = "ix_notification_logs_user_id_created_at_id"
#: The filters people use most, and the index each must be read through.
COMMON = [
    (message_log.LogFilter(), "ix_notification_logs_created_at_id"),
    (message_log.LogFilter(status=Status.FAILED), "ix_notification_logs_status_created_at_id"),
    (message_log.LogFilter(channel=Channel.SMS), "ix_notification_logs_channel_created_at_id"),
    (message_log.LogFilter(user_id="alice"), USER_INDEX),
]
#: A position a second page would start from.
LATER = (utcnow() - timedelta(hours=1), "00000000-0000-4000-8000-000000000000")


@contextmanager
def statements(settings: Settings) -> Iterator[list[tuple[str, Any]]]:
    """The statements sent to the database meanwhile, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan(session: Session, statement: str, parameters: Any) -> str:
    session.execute(text("SET LOCAL enable_seqscan = off"))
    session.execute(text("SET LOCAL enable_bitmapscan = off"))
    rows = session.connection().exec_driver_sql(f"EXPLAIN (COSTS OFF) {statement}", parameters)
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("after", [None, LATER], ids=["first page", "later page"])
@pytest.mark.parametrize("for_user", [None, "alice"], ids=["as the system", "acting for alice"])
@pytest.mark.parametrize(("filters", "index"), COMMON, ids=[i.removeprefix("ix_") for _, i in COMMON])
def test_a_page_is_one_ordered_index_scan(
    settings: Settings,
    filters: message_log.LogFilter,
    index: str,
    for_user: str | None,
    after: tuple[Any, ...] | None,
) -> None:
    """Given a filter, when a page of the log is read, then the query is an index scan in
    the log's order (no sort), through the filter's index (acting for a user, possibly the
    user's)."""
    with scope_for(settings.database_url, for_user) as session:
        with statements(settings) as sent:
            message_log.page(session, filters, after, 50, for_user=for_user)
        [(statement, parameters)] = [s for s in sent if "FROM notification_logs" in s[0]]
        shown = plan(session, statement, parameters)

    usable = {index, USER_INDEX} if for_user else {index}
    assert any(f"Index Scan Backward using {name} " in shown for name in usable), shown
    assert "Sort" not in shown, shown
