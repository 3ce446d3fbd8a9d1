"""When digest windows on a cadence close, in the user's time zone, and how durations read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.events.digests import next_close, parse_duration


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("cadence", "now", "zone", "closes"),
    [
        ("hourly", "2026-12-01T10:20:00+00:00", "UTC", "2026-12-01T11:00:00+00:00"),
        ("hourly", "2026-12-01T10:20:00+00:00", "Asia/Kolkata", "2026-12-01T10:30:00+00:00"),
        ("daily at 09:00", "2026-12-01T08:59:00+00:00", "UTC", "2026-12-01T09:00:00+00:00"),
        ("daily at 09:00", "2026-12-01T09:00:00+00:00", "UTC", "2026-12-02T09:00:00+00:00"),
        ("daily at 09:00", "2026-12-01T09:30:00+00:00", "Europe/Paris", "2026-12-02T08:00:00+00:00"),
        ("daily at 09:00", "2026-12-01T06:00:00+00:00", "America/New_York", "2026-12-01T14:00:00+00:00"),
        # 2026-12-01 is a Tuesday: next Monday is the 7th; a Tuesday cadence past its hour waits a week.
        ("weekly on monday at 09:00", "2026-12-01T10:00:00+00:00", "UTC", "2026-12-07T09:00:00+00:00"),
        ("weekly on tuesday at 09:00", "2026-12-01T10:00:00+00:00", "UTC", "2026-12-08T09:00:00+00:00"),
        ("weekly on tuesday at 11:00", "2026-12-01T10:00:00+00:00", "UTC", "2026-12-01T11:00:00+00:00"),
        # Across the spring-forward night in Paris (29 March 2026): still 09:00 local.
        ("daily at 09:00", "2026-03-28T12:00:00+00:00", "Europe/Paris", "2026-03-29T07:00:00+00:00"),
    ],
)
def test_a_cadence_closes_at_its_next_local_time(cadence: str, now: str, zone: str, closes: str) -> None:
    assert next_close(cadence, at(now), zone) == at(closes)


@pytest.mark.parametrize(
    ("raw", "period"),
    [
        ("2s", timedelta(seconds=2)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("30d", timedelta(days=30)),
    ],
)
def test_durations_read_with_their_unit(raw: str, period: timedelta) -> None:
    assert parse_duration(raw) == period


@pytest.mark.parametrize("raw", ["", "10", "1w", "-1m", "0s", "31d", "1.5h", "h"])
def test_a_malformed_or_out_of_bounds_duration_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"duration|outside"):
        parse_duration(raw)
