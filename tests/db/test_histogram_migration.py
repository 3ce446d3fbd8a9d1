"""The revision that stores the rollups' latency histograms as lists of counts (packed on
PostgreSQL, JSON lists on the embedded SQLite), on databases written before it: every count
keeps its bucket, empty histograms stay empty, and the downgrade gives back the documents
there were."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from migrations.migrate import downgrade, upgrade
from shared.db import histograms
from tests.conftest import PG_ADMIN_URL

BEFORE = "0020"
REVISION = "0023"

#: (time to deliver, time to read) of three rollup rows, as 0020 stored them.
STORED = [
    ({"0": 2, "7": 1, "31": 4}, {"40": 1}),
    ({}, {}),
    ({"3": 5}, {"2": 1, "1": 1}),
]
#: What they become.
ARRAYS = [
    ([2, 0, 0, 0, 0, 0, 0, 1] + [0] * 23 + [4], [0] * 40 + [1]),
    ([], []),
    ([0, 0, 0, 5], [0, 1, 1]),
]


def _fill(url: str, cast: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for n, (deliver, read) in enumerate(STORED):
            conn.execute(
                text(
                    "INSERT INTO analytics_daily (bucket, channel, template, rule, event_type, experiment, "
                    "variant, provider, sent, delivered, failed, bounced, complained, opened, clicked, read, "
                    f"seen, unsubscribed, bot_opened, bot_clicked, time_to_deliver, time_to_read) VALUES "
                    f"(:bucket, 'email', :template, '', '', '', '', '', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "
                    f"CAST(:deliver AS {cast}), CAST(:read AS {cast}))"
                ),
                {
                    "bucket": datetime(2026, 3, 2),
                    "template": f"t{n}",
                    "deliver": json.dumps(deliver),
                    "read": json.dumps(read),
                },
            )
    engine.dispose()


def _histograms(url: str) -> list[tuple[object, ...]]:
    """Each row's two histograms as stored, decoded: packed bytes unpacked, JSON parsed."""

    def decoded(value: object) -> object:
        if isinstance(value, bytes | memoryview):
            return histograms.split(histograms.from_bytes(value))
        return json.loads(value) if isinstance(value, str) else value

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT time_to_deliver, time_to_read FROM analytics_daily ORDER BY template")
        )
        found = [tuple(decoded(v) for v in row) for row in rows]
    engine.dispose()
    return found


def _has_function(url: str, name: str) -> bool:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM pg_proc WHERE proname = :n"), {"n": name}
        ).scalar_one()
    engine.dispose()
    return bool(found)


@pytest.fixture
def old_postgresql(run_id: str) -> Iterator[str]:
    name = f"kai_test_{run_id}_histograms"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    upgrade(url, BEFORE)
    _fill(url, "jsonb")
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgresql_histograms_are_packed_and_back(old_postgresql: str) -> None:
    upgrade(old_postgresql, REVISION)
    assert _histograms(old_postgresql) == ARRAYS
    assert not _has_function(old_postgresql, "analytics_merge")
    downgrade(old_postgresql, BEFORE)
    assert _histograms(old_postgresql) == STORED
    assert _has_function(old_postgresql, "analytics_merge")


def test_sqlite_histograms_become_lists_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kai.db'}"
    upgrade(url, BEFORE)
    _fill(url, "TEXT")
    upgrade(url, REVISION)
    assert _histograms(url) == ARRAYS
    downgrade(url, BEFORE)
    assert _histograms(url) == STORED
