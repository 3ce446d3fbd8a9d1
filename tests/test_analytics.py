"""Analytics rollups against the real PostgreSQL: what the triggers note and the folder counts
(each measure once per message, whatever the order and however often its events come), and
``GET /api/analytics`` reading it back."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from producer import receipts
from producer.analytics import Query
from producer.analytics import run as run_query
from producer.gateway.app import create_app
from shared import analytics, tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db import histograms
from shared.db.models import AnalyticsDaily, AnalyticsEvent, AnalyticsHourly, NotificationLog
from shared.db.rls import system_scope
from shared.payloads import EmailPayload, Stored
from tests.conftest import SERVER_KEY
from tests.gateway.server import LiveServer
from tests.readme import example_after
from workers.analytics import fold

API = {"Authorization": f"Bearer {SERVER_KEY}"}
#: A cohort far from every other test's messages: its own hour and day.
START = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def make_messages(settings: Settings, count: int, **dims: Any) -> list[str]:
    ids = []
    with system_scope(settings.database_url) as session:
        for i in range(count):
            message_id, _ = tracking.create(
                session,
                tracking.NewMessage(
                    channel=Channel(dims.get("channel", "email")),
                    recipient=f"u{i}@example.com",
                    payload=Stored(EmailPayload(to=f"u{i}@example.com", subject="s", text="t")),
                    max_attempts=3,
                    user_id=f"u{i}",
                    event_type=dims.get("event_type"),
                    template_key=dims.get("template", "welcome"),
                    rule_id=dims.get("rule"),
                ),
            )
            ids.append(message_id)
        session.execute(
            update(NotificationLog)
            .where(NotificationLog.id.in_(ids))
            .values(created_at=START, experiment_id=dims.get("experiment"), variant=dims.get("variant"))
        )
    return ids


def set_status(
    settings: Settings, ids: list[str], status: str, after: timedelta, provider: str = "smtp"
) -> None:
    with system_scope(settings.database_url) as session:
        session.execute(
            update(NotificationLog)
            .where(NotificationLog.id.in_(ids))
            .values(status=status, updated_at=START + after, provider=provider)
        )


def receipt(settings: Settings, message_id: str, type_: Any, code: str | None, after: timedelta) -> None:
    with system_scope(settings.database_url) as session:
        receipts.record(
            session,
            settings,
            receipts.Receipt(
                message_id=message_id,
                type=type_,
                provider="tracking",
                code=code,
                dedupe_key=f"{type_}:{message_id}:{uuid.uuid4()}",  # each one a new receipt
                occurred_at=START + after,
            ),
            receipts.Of(None, "email"),
        )


def fold_all(settings: Settings) -> None:
    while fold(settings):
        pass


def rollup(settings: Settings, table: Any, template: str) -> Any:
    with system_scope(settings.database_url) as session:
        columns = table.__table__
        return session.execute(select(columns).where(columns.c.template == template)).mappings().all()


@pytest.fixture
def quiet(make_settings: Callable[..., Settings]) -> Iterator[Settings]:
    """Settings whose folder is the test's: whatever other tests left noted is folded first."""
    settings = make_settings()
    fold_all(settings)
    yield settings


def test_each_measure_counts_once_whatever_the_order(quiet: Settings) -> None:
    """Given an open heard before the sending is recorded, the same open twice, a scanner's
    open, a click, a read and a bounce: one count each, a scanner's apart."""
    settings = quiet
    template = f"t-{uuid.uuid4().hex[:8]}"
    a, b, c = make_messages(settings, 3, template=template)
    receipt(settings, a, "opened", "human", timedelta(minutes=5))  # before its "sent"
    set_status(settings, [a, b, c], "sent", timedelta(seconds=2))
    receipt(settings, a, "opened", "human", timedelta(minutes=6))  # again
    receipt(settings, a, "clicked", "human", timedelta(minutes=7))
    receipt(settings, b, "opened", "bot", timedelta(seconds=3))
    receipt(settings, c, "bounced", "5.1.1", timedelta(seconds=30))
    set_status(settings, [c], "failed", timedelta(seconds=30))
    fold_all(settings)
    fold_all(settings)  # nothing left: nothing counted twice

    [hourly] = rollup(settings, AnalyticsHourly, template)
    [daily] = rollup(settings, AnalyticsDaily, template)
    for row in (hourly, daily):
        assert row["sent"] == 3
        assert (row["opened"], row["bot_opened"], row["clicked"]) == (1, 1, 1)
        assert (row["failed"], row["bounced"]) == (1, 1)
        # "opened" turned a's status "delivered": counted once, beside its "sent"
        assert row["delivered"] == 1
        assert sum(histograms.split(row["time_to_deliver"])) == 3
        assert sum(histograms.split(row["time_to_read"])) == 1
    assert hourly["bucket"] == START.replace(minute=0)
    assert daily["bucket"] == START.replace(hour=0, minute=0)
    read_ms = analytics.percentile(histograms.split(hourly["time_to_read"]), 0.5)
    assert read_ms == pytest.approx(5 * 60_000, rel=0.1)
    deliver_ms = analytics.percentile(histograms.split(hourly["time_to_deliver"]), 0.5)
    assert deliver_ms == pytest.approx(2_000, rel=0.1)


def test_an_event_of_a_message_that_is_gone_is_dropped(quiet: Settings) -> None:
    settings = quiet
    with system_scope(settings.database_url) as session:
        session.add(AnalyticsEvent(message_id=str(uuid.uuid4()), measure="sent", occurred_at=START))
    fold_all(settings)
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(AnalyticsEvent.id).limit(1)) is None


def test_a_claim_notes_nothing_only_the_outcome_does(quiet: Settings) -> None:
    """The trigger's condition spares the hot path: queued → processing writes no event."""
    settings = quiet
    [message_id] = make_messages(settings, 1, template=f"t-{uuid.uuid4().hex[:8]}")
    set_status(settings, [message_id], "processing", timedelta(seconds=1))
    with system_scope(settings.database_url) as session:
        noted = session.execute(
            text("SELECT measure FROM analytics_events WHERE message_id = :m"), {"m": message_id}
        )
        assert noted.scalars().all() == []
    set_status(settings, [message_id], "delivered", timedelta(seconds=2))
    with system_scope(settings.database_url) as session:
        noted = session.execute(
            text("SELECT measure FROM analytics_events WHERE message_id = :m"), {"m": message_id}
        )
        assert noted.scalars().all() == ["delivered"]


def capsys_run(code: str, gateway: str) -> str:
    """What an example prints, run against ``gateway`` with the server key."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {"gateway": gateway, "key": SERVER_KEY})
    return printed.getvalue()


def test_the_api_groups_by_template_with_rates_and_a_dense_series(quiet: Settings) -> None:
    settings = quiet
    first, second = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    ids = make_messages(settings, 4, template=first, rule="r1")
    other = make_messages(settings, 2, template=second)
    set_status(settings, ids + other, "sent", timedelta(seconds=1))
    receipt(settings, ids[0], "opened", "human", timedelta(hours=1))
    fold_all(settings)

    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, headers=API) as api:
        answer = api.get(
            "/api/analytics",
            params={"groupBy": "template,rule", "from": "2026-03-01", "to": "2026-03-04", "interval": "day"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["source"] == "daily"
        groups = {g["key"]["template"]: g for g in body["groups"]}
        mine = groups[first]
        assert mine["key"]["rule"] == "r1"
        assert mine["totals"]["sent"] == 4 and mine["totals"]["opened"] == 1
        assert mine["totals"]["rates"]["openRate"] == 0.25
        assert mine["totals"]["timeToRead"]["p50Ms"] == pytest.approx(3_600_000, rel=0.1)
        assert [point["start"][:10] for point in mine["series"]] == ["2026-03-01", "2026-03-02", "2026-03-03"]
        assert [point["sent"] for point in mine["series"]] == [0, 4, 0]
        assert groups[second]["totals"]["rates"]["openRate"] == 0

        report = capsys_run(example_after("the same names as filters"), server.url)
        assert f"{first} 4 0.25 " in report and f"{second} 2 0.0 None" in report

        hourly = api.get(
            "/api/analytics",
            params={
                "template": first,
                "from": "2026-03-02T09:00:00Z",
                "to": "2026-03-02T10:30:00Z",
                "interval": "hour",
            },
        ).json()
        assert hourly["source"] == "hourly"
        [group] = hourly["groups"]
        assert [p["sent"] for p in group["series"]] == [4, 0]

        for params, field in (
            ({"groupBy": "colour"}, "groupBy"),
            ({"interval": "minute"}, "interval"),
            ({"from": "yesterday"}, "from"),
            ({"from": "2026-03-02", "to": "2026-03-01"}, "from"),
            ({"from": "2020-01-01", "to": "2026-01-01", "interval": "hour"}, "from"),
        ):
            refused = api.get("/api/analytics", params=params)
            assert refused.status_code == 422, params
            assert refused.json()["error"]["details"][0]["field"] == field

        assert httpx.get(f"{server.url}/api/analytics").status_code == 401


def test_a_query_off_whole_days_reads_the_hourly_rollup() -> None:
    query = Query.parse({"from": "2026-03-02T09:30:00Z", "to": "2026-03-03"})
    assert not query.daily
    assert query.span() == (datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    weekly = Query.parse({"from": "2026-03-04", "to": "2026-03-20", "interval": "week"})
    assert weekly.daily
    assert [b.date().isoformat() for b in weekly.buckets()] == ["2026-03-02", "2026-03-09", "2026-03-16"]


def test_latency_buckets_read_back_within_ten_percent() -> None:
    for ms in (1.5, 42.0, 950.0, 61_000.0, 3_600_000.0, 86_400_000.0 * 6):
        histogram = analytics.bump([], analytics.latency_bucket(ms))
        found = analytics.percentile(histogram, 0.5)
        assert found is not None and abs(found - ms) / ms < 0.2
    assert analytics.percentile([], 0.5) is None
    assert analytics.percentile([0, 0], 0.5) is None
    many: list[int] = []
    for ms in range(1, 1001):
        analytics.bump(many, analytics.latency_bucket(float(ms)))
    p95 = analytics.percentile(many, 0.95)
    assert p95 is not None and abs(p95 - 950) / 950 < 0.1
    # Packed, histograms of different lengths add up bucket by bucket.
    assert histograms.split(histograms.join([1, 2]) + histograms.join([0, 0, 0, 4])) == [1, 2, 0, 4]
    assert histograms.split(histograms.join([1, 2, 3]) + histograms.join([1])) == [2, 2, 3]
    assert histograms.split(histograms.join([0, 2**40, 0, 0])) == [0, 2**40]
    assert histograms.split(0) == [] and histograms.join([]) == 0
    # The smallest and largest: bucket 0 begins at 1 ms; the last bucket takes anything later.
    assert analytics.percentiles([3], (0.0, 1.0)) == [1.0, analytics.RATIO]
    assert len(analytics.bump([], 10**6)) == analytics.SLOTS


def test_the_embedded_database_counts_the_same_way(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    """On SQLite (the embedded default) the same triggers note the events and the same folder
    counts them; the hourly query reads them back."""
    from migrations.migrate import upgrade

    url = f"sqlite:///{tmp_path}/kai.db"
    settings = make_settings(DATABASE_URL=url, MIGRATION_DATABASE_URL=url)
    upgrade(settings.owner_database_url)
    template = "embedded"
    ids = make_messages(settings, 2, template=template)
    set_status(settings, ids, "delivered", timedelta(seconds=1))
    receipt(settings, ids[0], "read", None, timedelta(minutes=2))
    fold_all(settings)
    with system_scope(settings.database_url) as session:
        answer = run_query(
            session.connection(),
            Query.parse({"template": template, "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T10:00:00Z"}),
        )
    [group] = answer["groups"]
    assert (group["totals"]["sent"], group["totals"]["delivered"], group["totals"]["read"]) == (2, 2, 1)
    assert group["totals"]["rates"]["readRate"] == 0.5
