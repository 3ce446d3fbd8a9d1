"""Send times: the instant ``sendAt``/``delayMs`` stand for, and the window they must fall in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.schedule import PAST_GRACE, Due, LocalTime, OutOfWindow, next_local, resolve

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def test_nothing_given_means_at_once() -> None:
    assert resolve(None, None, zone=None, now=NOW, max_ahead=YEAR) is None


@pytest.mark.parametrize(
    ("send_at", "delay_ms", "expected"),
    [
        (datetime(2026, 3, 28, 14, 0, tzinfo=ZoneInfo("Europe/Berlin")), None, datetime(2026, 3, 28, 13, 0)),
        (None, 1500, datetime(2026, 3, 28, 12, 0, 1, 500_000)),
        (None, 0, datetime(2026, 3, 28, 12, 0)),
        (NOW - PAST_GRACE, None, datetime(2026, 3, 28, 11, 59)),
        (NOW + YEAR, None, datetime(2027, 3, 28, 12, 0)),
    ],
)
def test_a_time_in_the_window_is_due_then(
    send_at: datetime | None, delay_ms: int | None, expected: datetime
) -> None:
    assert resolve(send_at, delay_ms, zone=None, now=NOW, max_ahead=YEAR) == Due(expected.replace(tzinfo=UTC))


@pytest.mark.parametrize(
    ("send_at", "delay_ms", "says"),
    [
        (NOW - PAST_GRACE - timedelta(seconds=1), None, "sendAt is in the past"),
        (NOW + YEAR + timedelta(seconds=1), None, "sendAt is more than 365 days ahead"),
        (None, int((YEAR + timedelta(seconds=1)).total_seconds() * 1000), "delayMs is more than 365 days"),
    ],
)
def test_a_time_outside_the_window_is_refused(
    send_at: datetime | None, delay_ms: int | None, says: str
) -> None:
    with pytest.raises(OutOfWindow, match=says):
        resolve(send_at, delay_ms, zone=None, now=NOW, max_ahead=YEAR)


def test_a_local_time_is_the_next_one_on_the_users_clock() -> None:
    """Given 12:00 UTC (17:45 in Kathmandu, UTC+5:45), 09:00 there is tomorrow's, and 18:00
    is today's."""
    tomorrow = resolve(LocalTime(local_time="09:00"), None, zone="Asia/Kathmandu", now=NOW, max_ahead=YEAR)
    today = resolve(LocalTime(local_time="18:00"), None, zone="Asia/Kathmandu", now=NOW, max_ahead=YEAR)

    assert tomorrow == Due(datetime(2026, 3, 29, 3, 15, tzinfo=UTC), "Asia/Kathmandu")
    assert today == Due(datetime(2026, 3, 28, 12, 15, tzinfo=UTC), "Asia/Kathmandu")


def test_a_local_time_without_a_zone_is_read_in_utc() -> None:
    due = resolve(LocalTime(local_time="13:30"), None, zone=None, now=NOW, max_ahead=YEAR)

    assert due == Due(datetime(2026, 3, 28, 13, 30, tzinfo=UTC), "UTC")


def test_a_local_time_the_clock_skips_moves_forward_by_the_gap() -> None:
    """Given the night Berlin moves from 02:00 to 03:00 (29 March 2026), 02:30 does not exist
    there: the message goes at 03:30 local, 01:30 UTC."""
    before = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)

    assert next_local("02:30", "Europe/Berlin", before) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_a_local_time_the_clock_shows_twice_is_the_first() -> None:
    """Given the night Berlin moves from 03:00 back to 02:00 (25 October 2026), 02:30 comes
    twice: the first, still at +02:00, is 00:30 UTC."""
    before = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)

    assert next_local("02:30", "Europe/Berlin", before) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_a_local_time_past_a_short_horizon_is_refused() -> None:
    with pytest.raises(OutOfWindow, match="sendAt is more than"):
        resolve(LocalTime(local_time="11:00"), None, zone="UTC", now=NOW, max_ahead=timedelta(hours=1))
