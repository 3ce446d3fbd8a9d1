"""The group-commit writer: callers share transactions, yet each sees its own result or
error, and nothing is handed back before its transaction committed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import Connection, text

from shared.config import Settings
from shared.db.group_commit import GroupCommit, WriterStopped
from shared.db.session import dispose_loop_engines, get_engine

pytestmark = pytest.mark.anyio


@pytest.fixture
def scratch_table(settings: Settings) -> str:
    name = "group_commit_probe"
    with get_engine(settings.migration_database_url or settings.database_url).begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(text(f"CREATE TABLE {name} (id integer PRIMARY KEY, note text NOT NULL)"))
        conn.execute(text(f"GRANT SELECT, INSERT ON {name} TO PUBLIC"))
    return name


def insert_rows(table: str, seen: list[int]) -> Callable[[Connection, Sequence[int]], list[int]]:
    def write(connection: Connection, ids: Sequence[int]) -> list[int]:
        seen.append(len(ids))
        for i in ids:
            connection.execute(text(f"INSERT INTO {table} (id, note) VALUES (:id, 'x')"), {"id": i})
        return [i * 10 for i in ids]

    return write


def stored(settings: Settings, table: str) -> set[int]:
    with get_engine(settings.database_url).connect() as conn:
        return {row[0] for row in conn.execute(text(f"SELECT id FROM {table}"))}


async def test_callers_waiting_together_share_a_transaction(settings: Settings, scratch_table: str) -> None:
    """Given twenty callers at once, then they are written in fewer transactions than
    callers, each gets its own result, and every row is there once they have it."""
    batches: list[int] = []
    writer: GroupCommit[int, int] = GroupCommit(
        "probe", settings.database_url, insert_rows(scratch_table, batches)
    )

    results = await asyncio.gather(*(writer.call(i) for i in range(20)))

    assert results == [i * 10 for i in range(20)]
    assert sum(batches) == 20 and len(batches) < 20
    assert stored(settings, scratch_table) == set(range(20))
    await writer.stop()
    await dispose_loop_engines()


async def test_one_bad_item_fails_alone(settings: Settings, scratch_table: str) -> None:
    """Given a batch in which one item breaks the transaction (a duplicate key), then that
    caller gets the database's error, the others their results, and their rows are stored."""
    batches: list[int] = []
    writer: GroupCommit[int, int] = GroupCommit(
        "probe", settings.database_url, insert_rows(scratch_table, batches)
    )
    await writer.call(7)

    outcomes = await asyncio.gather(*(writer.call(i) for i in (5, 6, 7, 8)), return_exceptions=True)

    assert outcomes[0:2] == [50, 60] and outcomes[3] == 80
    assert isinstance(outcomes[2], Exception) and "duplicate key" in str(outcomes[2])
    assert stored(settings, scratch_table) == {5, 6, 7, 8}
    await writer.stop()
    await dispose_loop_engines()


async def test_nothing_is_answered_before_the_commit(settings: Settings, scratch_table: str) -> None:
    """Given a batch whose commit fails (the transaction is made to fail at its end), then no
    caller is told its write succeeded and no row is left."""

    def write_then_fail(connection: Connection, ids: Sequence[int]) -> list[int]:
        for i in ids:
            connection.execute(text(f"INSERT INTO {scratch_table} (id, note) VALUES (:id, 'x')"), {"id": i})
        # A deferred failure: the statement is fine, the transaction cannot commit.
        connection.execute(text("SELECT 1/0"))
        return list(ids)

    writer: GroupCommit[int, int] = GroupCommit("probe", settings.database_url, write_then_fail)

    outcomes = await asyncio.gather(*(writer.call(i) for i in range(3)), return_exceptions=True)

    assert all(isinstance(o, Exception) and "division by zero" in str(o) for o in outcomes)
    assert stored(settings, scratch_table) == set()
    await writer.stop()
    await dispose_loop_engines()


async def test_a_stopped_writer_takes_nothing(settings: Settings, scratch_table: str) -> None:
    writer: GroupCommit[int, int] = GroupCommit(
        "probe", settings.database_url, insert_rows(scratch_table, [])
    )
    await writer.stop()

    with pytest.raises(WriterStopped):
        await writer.call(1)
