"""The PostgreSQL pool pings only connections that sat idle, and recovers from dead ones."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from shared.db import session as db_session
from tests.conftest import PG_ADMIN_URL


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db_session.make_engine(database_url)
    yield engine
    engine.dispose()


def test_an_idle_connection_that_died_is_replaced_before_use(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_session, "IDLE_PING_AFTER_S", 0.0)
    first = _backend_pid(engine)
    _terminate(first)

    second = _backend_pid(engine)

    assert second != first


def test_a_connection_returned_a_moment_ago_is_not_pinged_and_a_dead_one_resets_the_pool(
    engine: Engine,
) -> None:
    first = _backend_pid(engine)
    _terminate(first)

    with pytest.raises(OperationalError):
        _backend_pid(engine)  # no ping inside the idle window: the statement meets the dead socket

    assert _backend_pid(engine) != first
