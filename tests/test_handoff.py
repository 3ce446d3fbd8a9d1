"""The embedded broker's hand-off: producers leave their ids in relay markers, the runner's
relay publishes them into its in-memory broker (shared/handoff.py, workers/handoff.py).
Here on a real SQLite database and Dramatiq's real stub broker, in this process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest

from migrations.migrate import upgrade
from producer.service import NotificationService
from shared import handoff
from shared.broker import build_broker, reset_broker
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from tests.waiting import wait_until
from workers.embedded import EmbeddedWorkers
from workers.handoff import HandOffRelay


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    settings = Settings.from_env({"KAI_VAR_DIR": str(tmp_path / "var")})
    assert settings.embedded_broker
    upgrade(settings.owner_database_url)
    return settings


@pytest.fixture
def broker(embedded: Settings) -> Iterator[dramatiq.Broker]:
    built = build_broker(embedded)
    yield built
    built.close()


def on_email_queue(broker: dramatiq.Broker) -> int:
    return int(broker.queues[Channel.EMAIL.queue_name].qsize())  # type: ignore[attr-defined]


def send(settings: Settings) -> str:
    return NotificationService(settings).send_email(to="a@example.com", subject="Hi", text="Hi")


def test_a_send_with_no_runner_waits_in_its_marker_and_says_so(embedded: Settings) -> None:
    """Given an embedded database and no runner, when a message is sent, then it waits for the
    runner, and a description from this process says so instead of reporting a broker."""
    send(embedded)

    waiting = handoff.backlog(embedded)
    assert waiting.count == 1
    assert not handoff.served_here()
    assert "1 message(s) waiting for it" in handoff.describe(embedded)
    assert waiting.unserved(utcnow() + handoff.UNSERVED_AFTER + timedelta(seconds=1))


def test_the_relay_publishes_each_waiting_id_once(embedded: Settings, broker: dramatiq.Broker) -> None:
    """Given two sends made while no runner was up, when the runner's relay takes the markers,
    then both ids are on the email queue once each and nothing is left for a second pass."""
    sent = {send(embedded), send(embedded)}
    relay = HandOffRelay(embedded, broker)

    assert relay.publish_waiting() == 2
    assert relay.publish_waiting() == 0
    queued = broker.queues[Channel.EMAIL.queue_name].queue  # type: ignore[attr-defined]
    assert {dramatiq.Message.decode(body).message_id for body in queued} == sent
    assert handoff.backlog(embedded).count == 0


def test_a_send_in_the_runner_wakes_its_relay(embedded: Settings, broker: dramatiq.Broker) -> None:
    """Given the relay running in this process with a poll far too slow to matter, when a
    message is sent here, then it is on the queue at once, and the description says the
    broker is in this process."""
    relay = HandOffRelay(embedded, broker, interval=3600)
    relay.start()
    try:
        assert handoff.served_here()
        assert handoff.describe(embedded) == "embedded: in this process"
        send(embedded)
        wait_until(lambda: on_email_queue(broker) == 1, timeout=5, message="not published")
    finally:
        relay.stop()
    assert not handoff.served_here()


def test_on_rabbitmq_the_runner_leaves_markers_to_the_scheduler(settings: Settings) -> None:
    """Given `kai-messaging run`'s workers on RabbitMQ, then no hand-off relay serves the
    process: there every producer publishes itself and a marker is a publish in flight."""
    assert not settings.embedded_broker
    reset_broker()
    workers = EmbeddedWorkers(settings)
    workers.start()
    try:
        assert not handoff.served_here()
    finally:
        workers.stop()
        reset_broker()
