"""The starter set on `kai-messaging run` (the embedded defaults): present from the first start,
so the brief's ``process_event`` example, run from a second process, produces messages with
nothing configured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import running
from tests.gateway.server import free_port
from tests.waiting import wait_until

#: The example the README gives, as a user would run it beside `kai-messaging run`.
BRIEF_EXAMPLE = """
from producer import EventType, event_notification_service

event_id = event_notification_service.process_event(
    EventType.SUBSCRIPTION_PAYMENT_FAILED,
    user_id="user-123",
    data={"subscriptionId": "sub-123", "failureReason": "insufficient_funds"},
)
print(event_id)
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[httpx.Client]:
    """`kai-messaging run` in a fresh directory, and a client holding its dev key."""
    instance = running.start(tmp_path, "--port", str(free_port()))
    try:
        with instance.client() as client:
            yield client
    finally:
        instance.stop()


def test_the_brief_example_produces_messages_on_a_fresh_run(gateway: httpx.Client, tmp_path: Path) -> None:
    """Given a fresh `kai-messaging run` and the user's contact email set over HTTP, when the
    brief's example runs in a second process, then the user's feed holds the starter in-app
    notification and the starter email lands in var/outbox/; and `kai-messaging starter
    --dry-run` finds the whole set already present."""
    contact = gateway.put("/api/users/user-123/contacts", json={"email": "user@example.com"})
    assert contact.status_code == 200, contact.text

    ran = subprocess.run(
        [sys.executable, "-c", BRIEF_EXAMPLE],
        cwd=tmp_path,
        env=running.embedded_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    event_id = ran.stdout.strip().splitlines()[-1]  # after the log lines the API prints

    feed: list[dict[str, str]] = []

    def notified() -> bool:
        answer = gateway.get("/api/notifications", headers={"X-User-Id": "user-123"})
        feed[:] = answer.json().get("items", [])
        return bool(feed)

    wait_until(notified, timeout=20, message="no in-app notification")
    assert feed[0]["title"] == "Payment failed"
    assert "insufficient_funds" in feed[0]["message"]
    produced = gateway.get(f"/api/events/{event_id}").json()
    outbox = tmp_path / "var" / "outbox"

    def mailed() -> bool:
        return any((outbox / f"{i}.eml").exists() for i in produced["messageIds"])

    wait_until(mailed, timeout=20, message="no email in var/outbox/")
    (eml,) = [outbox / f"{i}.eml" for i in produced["messageIds"] if (outbox / f"{i}.eml").exists()]
    mail = eml.read_text()
    assert "Subject: Action needed: your subscription payment failed" in mail
    assert "To: user@example.com" in mail

    dry = running.cli("starter", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would add" not in dry.stdout
    assert "present    rule      Starter: subscription.payment_failed" in dry.stdout
