"""The preference decision for one message: opt-outs, per-event switches, critical
messages and quiet hours in the user's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from shared.channels import Channel
from shared.preferences import Allow, Defer, Preferences, Suppress, decide, quiet_hours_end

EMAIL_OFF = Preferences(channels={**dict.fromkeys(Channel, True), Channel.EMAIL: False})


def test_defaults_allow_everything() -> None:
    assert decide(Preferences(), Channel.SMS, "order.shipped", critical=False) == Allow()


def test_a_channel_opt_out_suppresses_and_critical_bypasses_it() -> None:
    assert isinstance(decide(EMAIL_OFF, Channel.EMAIL, None, critical=False), Suppress)
    assert decide(EMAIL_OFF, Channel.EMAIL, None, critical=True) == Allow()


def test_an_explicit_event_choice_wins_over_the_channel_switch() -> None:
    prefs = Preferences(
        channels=EMAIL_OFF.channels,
        events={"security.alert": {"email": True}, "order.shipped": {"sms": False}},
    )

    assert decide(prefs, Channel.EMAIL, "security.alert", critical=False) == Allow()
    suppressed = decide(prefs, Channel.SMS, "order.shipped", critical=False)
    assert isinstance(suppressed, Suppress) and suppressed.code == "preference_event_opt_out"


QUIET = Preferences(quiet_start=time(22, 0), quiet_end=time(7, 0), timezone="Europe/Paris")


@pytest.mark.parametrize(
    ("now", "until"),
    [
        # 23:30 Paris (UTC+1 in winter) → held until 07:00 Paris the next morning.
        (datetime(2026, 1, 10, 22, 30, tzinfo=UTC), datetime(2026, 1, 11, 6, 0, tzinfo=UTC)),
        # 03:00 Paris → until 07:00 the same morning.
        (datetime(2026, 1, 11, 2, 0, tzinfo=UTC), datetime(2026, 1, 11, 6, 0, tzinfo=UTC)),
        # Summer time (UTC+2): 23:00 Paris → 05:00 UTC.
        (datetime(2026, 7, 10, 21, 0, tzinfo=UTC), datetime(2026, 7, 11, 5, 0, tzinfo=UTC)),
        # 12:00 Paris: outside the window.
        (datetime(2026, 1, 11, 11, 0, tzinfo=UTC), None),
        # 07:00 Paris exactly: the window has ended.
        (datetime(2026, 1, 11, 6, 0, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_end_in_the_users_time_zone(now: datetime, until: datetime | None) -> None:
    assert quiet_hours_end(QUIET, now) == until


def test_quiet_hours_delay_email_and_sms_only_and_not_critical_ones() -> None:
    night = datetime(2026, 1, 10, 23, 30, tzinfo=UTC)

    assert isinstance(decide(QUIET, Channel.SMS, None, critical=False, now=night), Defer)
    assert isinstance(decide(QUIET, Channel.EMAIL, None, critical=False, now=night), Defer)
    assert decide(QUIET, Channel.IN_APP, None, critical=False, now=night) == Allow()
    assert decide(QUIET, Channel.SMS, None, critical=True, now=night) == Allow()
