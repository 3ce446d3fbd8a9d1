"""Retention: notifications older than IN_APP_RETENTION_DAYS are purged, in batches, by the
periodic job that in-app worker processes run; newer ones stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from shared.config import Settings
from shared.db.models import Notification, utcnow
from shared.db.rls import system_scope
from tests.gateway.inbox import seed
from tests.waiting import wait_until
from workers import retention
from workers.retention import Retention, purge_expired


def remaining(settings: Settings) -> set[str]:
    with system_scope(settings.database_url) as session:
        return set(session.scalars(select(Notification.title)))


def test_purge_deletes_only_what_is_past_the_retention_age(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 30-day retention, five notifications 40 days old (read, unread and deleted alike)
    and two from yesterday, when the purge runs in batches of two, then exactly the five old
    ones are gone."""
    settings = make_settings(IN_APP_RETENTION_DAYS="30")
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    seed(settings, "alice", 3, start=utcnow() - timedelta(days=40), prefix="old-a")
    seed(settings, "bob", 2, start=utcnow() - timedelta(days=40), prefix="old-b")
    seed(settings, "alice", 2, start=utcnow() - timedelta(days=1), prefix="new")

    purged = purge_expired(settings)

    assert purged == 5
    assert remaining(settings) == {"new0", "new1"}
    assert purge_expired(settings) == 0


def test_zero_days_keeps_everything(make_settings: Callable[..., Settings]) -> None:
    """Given IN_APP_RETENTION_DAYS=0, then nothing is ever purged."""
    settings = make_settings(IN_APP_RETENTION_DAYS="0")
    seed(settings, "alice", 2, start=utcnow() - timedelta(days=4000))

    assert purge_expired(settings) == 0
    assert len(remaining(settings)) == 2


def test_the_periodic_job_purges_without_being_asked(make_settings: Callable[..., Settings]) -> None:
    """Given the retention job running every 50 ms, when an expired notification appears, then
    it is purged on a later round while a fresh one stays."""
    settings = make_settings(IN_APP_RETENTION_DAYS="7", IN_APP_RETENTION_INTERVAL="50")
    job = Retention(settings)
    job.start()
    try:
        seed(settings, "alice", 1, start=utcnow() - timedelta(days=8), prefix="expired")
        seed(settings, "alice", 1, prefix="fresh")
        wait_until(lambda: remaining(settings) == {"fresh0"}, message=lambda: f"left: {remaining(settings)}")
    finally:
        job.stop()
