"""Metrics move with the messages: counters on the gateway's /metrics, queue and dead-letter
depths read from RabbitMQ, and a real worker pool's merged multiprocess exposition."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import WEBHOOK_SECRET, Fleet, final_status
from tests.gateway.server import LiveServer, free_port
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_sent_and_failed_messages(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given one delivered and one permanently failed webhook, the completed counters and the
    latency histogram count them by status and reason."""
    with LiveServer(create_app(settings)) as server, WebhookReceiver(WEBHOOK_SECRET) as receiver:
        before = httpx.get(f"{server.url}/metrics").text
        fleet(settings, [Channel.WEBHOOK])
        service = NotificationService(settings)
        final_status(service, service.send_webhook(url=receiver.url, payload={"ok": 1}))
        receiver.respond_next(404)
        final_status(service, service.send_webhook(url=receiver.url, payload={"ok": 0}))

        after = httpx.get(f"{server.url}/metrics").text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("kai_messages_enqueued_total", channel="webhook") == 2
    assert delta("kai_messages_completed_total", channel="webhook", status="delivered", reason="ok") == 1
    assert delta("kai_messages_completed_total", channel="webhook", status="failed", reason="http_404") == 1
    assert delta("kai_delivery_attempts_total", channel="webhook") == 2
    assert delta("kai_enqueue_to_final_seconds_count", channel="webhook", status="delivered") == 1
    assert delta("kai_provider_seconds_count", channel="webhook", outcome="permanent") == 1


def test_queue_and_dead_letter_depths_are_exported(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given a poison message dead-lettered after its retries and an SMS waiting with no
    worker, /metrics shows the dead-letter depth of in_app and the ready depth of sms."""
    from shared.broker import publish
    from tests.poison import POISON_PAYLOAD
    from tests.workers.test_scheduler import insert_without_publishing

    running = fleet(settings, [Channel.IN_APP])
    poison = insert_without_publishing(settings, payload=POISON_PAYLOAD.to_json())
    publish(running.broker, Channel.IN_APP, poison)
    service = NotificationService(settings)
    assert final_status(service, poison)["status"] == "failed"
    service.send_sms(to="+14155550100", message="waiting")

    with LiveServer(create_app(settings)) as server:

        def exported() -> bool:
            text = httpx.get(f"{server.url}/metrics").text
            return (
                value(text, "kai_queue_depth", queue="in_app", kind="dead_letter") == 1
                and value(text, "kai_queue_depth", queue="sms", kind="ready") == 1
            )

        wait_until(exported, timeout=15, message="queue depths not exported")


def test_a_worker_pool_serves_merged_metrics(base_env: dict[str, str], settings: Settings) -> None:
    """Given `kai-messaging worker in_app` with its metrics port, after it delivers messages
    its exposition shows our counters and Dramatiq's per-actor counts."""
    port = free_port()
    env = {**os.environ, **base_env, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "worker",
            "in_app",
            "--processes",
            "2",
            "--threads",
            "2",
            "--metrics-port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        service = NotificationService(settings)
        ids = [service.send_in_app_notification(user_id="m", title="t", message=str(n)) for n in range(6)]
        for message_id in ids:
            final_status(service, message_id, timeout=90)

        text = ""

        def scraped() -> bool:
            nonlocal text
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
            except httpx.HTTPError:
                return False
            return (
                value(text, "kai_messages_completed_total", channel="in_app", status="delivered", reason="ok")
                == 6
            )

        wait_until(scraped, timeout=20, message=lambda: f"worker metrics not merged: {text[:500]}")
        assert value(text, "dramatiq_messages_total", queue_name="in_app", actor_name="deliver_in_app") == 6
    finally:
        process.terminate()
        process.wait(30)
