"""Settings of configured webhook endpoints: defaults, and clear errors for bad values."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap

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


#: A value for each variable that switches a real shared service on.
REAL_SERVICES = {
    "DATABASE_URL": "postgresql://kai@db.internal/kai",
    "MIGRATION_DATABASE_URL": "postgresql://owner@db.internal/kai",
    "BROKER_URL": "amqp://kai@mq.internal/",
    "REDIS_URL": "redis://cache.internal/0",
}


def test_the_embedded_dev_mode_may_reach_private_networks() -> None:
    """Given no real service configured, then webhooks may reach loopback (a receiver on
    the developer's machine) and the reason says it is the dev mode's default."""
    settings = Settings.from_env({})

    assert settings.address_policy.allow_private is True
    assert "embedded dev mode" in settings.webhook_private_networks_reason


@pytest.mark.parametrize("variable", list(REAL_SERVICES))
def test_private_networks_are_refused_by_default_once_a_real_service_is_set(variable: str) -> None:
    """Given any real service URL and no WEBHOOK_ALLOW_PRIVATE_NETWORKS, then webhook URLs
    naming internal addresses are refused, and the reason names what was set."""
    settings = Settings.from_env({variable: REAL_SERVICES[variable]})

    assert settings.webhook_allow_private_networks is False
    assert settings.address_policy.allow_private is False
    assert variable in settings.webhook_private_networks_reason


@pytest.mark.parametrize(("raw", "allowed"), [("true", True), ("false", False)])
@pytest.mark.parametrize("services", [{}, REAL_SERVICES])
def test_an_explicit_setting_always_wins(raw: str, allowed: bool, services: dict[str, str]) -> None:
    settings = Settings.from_env({**services, "WEBHOOK_ALLOW_PRIVATE_NETWORKS": raw})

    assert settings.webhook_allow_private_networks is allowed
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS" in settings.webhook_private_networks_reason


@pytest.mark.parametrize(
    ("env", "allowed", "why"),
    [
        ({}, True, "embedded dev mode"),
        ({"DATABASE_URL": REAL_SERVICES["DATABASE_URL"]}, False, "DATABASE_URL"),
        ({"BROKER_URL": REAL_SERVICES["BROKER_URL"], "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "yes"}, True, "set"),
    ],
)
def test_the_value_in_force_and_why_is_logged_at_start_up(
    env: dict[str, str], allowed: bool, why: str
) -> None:
    """Given a process configured as the gateway and workers configure themselves, then its
    start-up writes one warning line saying whether webhooks may reach private networks
    and why."""
    child = textwrap.dedent(
        """
        import os
        from shared.config import Settings, log_webhook_network_policy
        from shared.logging import configure_logging

        settings = Settings.from_env(os.environ)
        configure_logging("WARNING")
        log_webhook_network_policy(settings)
        """
    )
    environment = {k: v for k, v in os.environ.items() if k not in {*REAL_SERVICES, *CONFIG_NAMES}}
    done = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=120,
        check=True,
    )

    (line,) = [json.loads(raw) for raw in done.stderr.splitlines() if raw.strip()]
    assert line["level"] == "warning" and line["event"] == "webhook.private_networks"
    assert line["allowed"] is allowed and why in line["reason"]
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS" in line["detail"]


#: Variables of this test's own settings that the child must not inherit.
CONFIG_NAMES = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS", "LOG_LEVEL"}
