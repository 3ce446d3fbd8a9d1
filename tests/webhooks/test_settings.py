"""Settings of configured webhook endpoints: defaults, and clear errors for bad values."""

from __future__ import annotations

import ipaddress

import pytest

from shared.config import Settings
from shared.errors import ConfigError
from shared.webhooks.settings import DEFAULT_RETRY_SCHEDULE_MS


def test_defaults_follow_svix() -> None:
    webhooks = Settings.from_env({}).webhooks

    assert webhooks.retry_schedule_ms == DEFAULT_RETRY_SCHEDULE_MS
    assert [d // 1000 for d in webhooks.retry_schedule_ms] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert webhooks.secret_grace_ms == 24 * 3600 * 1000
    assert webhooks.disable_after_ms == 5 * 24 * 3600 * 1000
    assert webhooks.allowed_subnets == ()


def test_values_are_read() -> None:
    webhooks = Settings.from_env(
        {"WEBHOOK_RETRY_SCHEDULE": "10, 20", "WEBHOOK_ALLOWED_SUBNETS": "10.0.0.0/8,fd00::/8"}
    ).webhooks

    assert webhooks.retry_schedule_ms == (10, 20)
    assert webhooks.allowed_subnets == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_ALLOWED_SUBNETS", "10.0.0.0/33"),
        ("WEBHOOK_ALLOWED_SUBNETS", "intranet"),
        ("WEBHOOK_RETRY_SCHEDULE", "5s,10s"),
        ("WEBHOOK_RETRY_SCHEDULE", "-1"),
        ("WEBHOOK_SECRET_GRACE_PERIOD", "a day"),
        ("WEBHOOK_DISABLE_AFTER", "0"),
        ("WEBHOOK_BREAKER_THRESHOLD", "0"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
