"""Engines and sessions, one engine per database URL per process.

SQLite (the embedded default) runs in WAL mode with a busy timeout so the gateway and the
in-process workers can write concurrently; PostgreSQL uses psycopg 3 with a pool sized for
the worker threads of one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}

#: Pool size for PostgreSQL: a worker process runs up to --threads actors at once, plus the
#: scheduler thread; the gateway runs its publish calls on a thread pool of 40.
POOL_SIZE = 20
POOL_OVERFLOW = 30

#: Connections an event loop's engine keeps open between uses. Its batched writers hold one
#: each at a time, but the gateway's inbox reads hold one per request in flight: with 4, a
#: gateway under 200 concurrent readers opened and closed a connection for most requests.
ASYNC_POOL_SIZE = 20

#: How long closing another loop's pooled connections may take.
DISPOSE_TIMEOUT_S = 5.0

#: A pooled PostgreSQL connection idle longer than this (seconds) is pinged before reuse. One
#: returned more recently is handed out as is: pinging every checkout cost a round trip per
#: transaction, about a quarter of the database time of an enqueue or a delivery. A server
#: restart inside the window fails one statement, which invalidates the whole pool.
IDLE_PING_AFTER_S = 5.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _stamp_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at <= IDLE_PING_AFTER_S:
        return  # fresh from connect, or returned a moment ago
    try:
        # Through a cursor: the same calls on psycopg's connection and on SQLAlchemy's
        # adapter of its asyncio connection.
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()
    except Exception as error:  # any failure means "do not hand this connection out"
        # The pool discards the connection and checks out another (SQLAlchemy's documented
        # pessimistic-disconnect recipe).
        raise exc.DisconnectionError() from error


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=1800)
    event.listen(engine, "checkin", _stamp_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


def get_engine(url: str) -> Engine:
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
            _factories[url] = sessionmaker(engine, expire_on_commit=False)
        return engine


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    get_engine(url)
    session = _factories[url]()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


def async_url(url: str) -> str:
    """The same database through an asyncio driver: psycopg's own for PostgreSQL, aiosqlite
    for SQLite."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    return url


#: Engines per event loop: an asyncio connection belongs to the loop that opened it.
_async_engines: dict[tuple[str, int], tuple[AsyncEngine, asyncio.AbstractEventLoop]] = {}


def get_async_engine(url: str) -> AsyncEngine:
    """The asyncio engine for ``url`` on the running event loop."""
    loop = asyncio.get_running_loop()
    key = (url, id(loop))
    with _lock:
        found = _async_engines.get(key)
        engine = found[0] if found is not None else None
        if engine is None:
            if url.startswith("sqlite"):
                engine = create_async_engine(async_url(url), connect_args={"timeout": 10})
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            else:
                engine = create_async_engine(
                    url, pool_size=ASYNC_POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=1800
                )
                event.listen(engine.sync_engine, "checkin", _stamp_checkin)
                event.listen(engine.sync_engine, "checkout", _ping_if_idle)
            _async_engines[key] = (engine, loop)
        return engine


@asynccontextmanager
async def async_transaction(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection in one transaction on the running event loop's engine (committed on
    success, rolled back on error): request handlers wait for the database without holding
    a thread."""
    async with get_async_engine(url).begin() as connection:
        yield connection


async def dispose_loop_engines() -> None:
    """Close the pooled connections of the running loop's engines (before the loop ends: an
    asyncio connection cannot be closed from another loop)."""
    loop = id(asyncio.get_running_loop())
    with _lock:
        mine = [key for key in _async_engines if key[1] == loop]
        engines = [_async_engines.pop(key)[0] for key in mine]
    for engine in engines:
        await engine.dispose()


def dispose_all() -> None:
    """Close every pooled connection (after fork, at shutdown, between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()
        async_engines = list(_async_engines.values())
        _async_engines.clear()
    # Asyncio engines close on their own loops (a loop running on another thread, such as the
    # producer's, does it there); those of loops that are gone are released with them.
    for async_engine, loop in async_engines:
        if loop.is_running() and not _is_current(loop):
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(async_engine.dispose(), loop).result(DISPOSE_TIMEOUT_S)


def _is_current(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
