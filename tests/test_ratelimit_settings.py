"""Rate-limit settings: the budget format, the defaults, and clear errors at start."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from shared.ratelimit_settings import DEFAULT_SEND, Limit, parse_limit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("6000/min", Limit(6000, 60_000)),
        ("100/s", Limit(100, 1_000)),
        (" 20000 / h ", Limit(20000, 3_600_000)),
        ("300", Limit(300, 60_000)),
        ("0", None),
        ("off", None),
    ],
)
def test_budgets_are_count_per_period(raw: str, expected: Limit | None) -> None:
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["many", "10/week", "-5/min", "1.5/s", "/min"])
def test_a_malformed_budget_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=re.escape("<count>/<s|min|h>")):
        parse_limit(raw)


def test_defaults_are_generous_and_on() -> None:
    limits = Settings.from_env({}).rate_limits
    assert limits.enabled and limits.send == DEFAULT_SEND and DEFAULT_SEND.count >= 1000
    assert (limits.sms_recipient_per_hour, limits.email_recipient_per_hour) == (10, 50)


def test_everything_can_be_set_or_switched_off() -> None:
    limits = Settings.from_env(
        {
            "RATE_LIMIT_ENABLED": "false",
            "RATE_LIMIT_SEND": "5/s",
            "RATE_LIMIT_READ": "off",
            "SMS_RECIPIENT_LIMIT_PER_HOUR": "0",
            "EMAIL_RECIPIENT_LIMIT_PER_HOUR": "7",
        }
    ).rate_limits
    assert not limits.enabled
    assert limits.send == Limit(5, 1000) and limits.read is None
    assert (limits.sms_recipient_per_hour, limits.email_recipient_per_hour) == (0, 7)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_MANAGE", "lots"),
        ("RATE_LIMIT_ENABLED", "perhaps"),
        ("SMS_RECIPIENT_LIMIT_PER_HOUR", "-1"),
    ],
)
def test_a_bad_value_stops_the_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_reading_settings_imports_no_limiter_and_no_metrics_client() -> None:
    """Worker pools read settings before they put the Prometheus client in multiprocess mode;
    a client imported earlier would keep every worker's metrics in memory, unseen."""
    check = "import sys, shared.config; print(sorted({'prometheus_client', 'redis'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
