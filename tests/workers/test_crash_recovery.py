"""A worker pool killed with SIGKILL while it holds messages loses none of them.

The pool runs exactly as in production (``kai-messaging worker webhook``, the Dramatiq CLI,
a separate process group) against a slow receiver, so that at the moment of the kill it has
requests in flight and more messages prefetched but unacknowledged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from producer.service import NotificationService
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import WEBHOOK_SECRET, final_status
from tests.sinks.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 40
THREADS = 8


class WorkerPool:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "worker",
                "webhook",
                "--processes",
                "1",
                "--threads",
                str(THREADS),
            ],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,  # its own process group, so the kill takes every child
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                # The Dramatiq main process forwards SIGTERM to its workers for a graceful
                # stop; signalling the whole group would make each worker see it twice and
                # kill itself hard.
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)


@pytest.fixture
def pool(base_env: dict[str, str]) -> Iterator[WorkerPool]:
    env = {
        **os.environ,
        **base_env,
        "PYTHONPATH": str(ROOT),
        "DELIVERY_LEASE": "2000",
        "WEBHOOK_TIMEOUT": "5000",
    }
    p = WorkerPool(env)
    yield p
    p.stop_all()


def statuses(settings: Settings) -> dict[str, int]:
    with system_scope(settings.database_url) as session:
        rows = session.execute(
            select(NotificationLog.status, func.count()).group_by(NotificationLog.status)
        ).all()
    return {status: count for status, count in rows}


def test_sigkill_of_a_busy_pool_loses_no_message(pool: WorkerPool, make_settings) -> None:  # type: ignore[no-untyped-def]
    """Given 40 webhooks and a pool busy with a slow receiver, when the pool is SIGKILLed
    mid-flight and started again, then every message ends delivered and each reached the
    receiver at least once; only requests that were in flight at the kill may repeat."""
    settings: Settings = make_settings(DELIVERY_LEASE="2000")
    service = NotificationService(settings)
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.delay = 0.3
        ids = [service.send_webhook(url=receiver.url, payload={"n": n}) for n in range(MESSAGES)]

        first = pool.start()
        receiver.wait_for(THREADS + 2, timeout=30)
        pool.kill(first)
        at_kill = statuses(settings)
        assert at_kill.get("delivered", 0) < MESSAGES, at_kill
        assert at_kill.get("processing", 0) > 0, at_kill  # it really held messages

        pool.start()
        views = [final_status(service, message_id, timeout=60) for message_id in ids]

        assert {v["status"] for v in views} == {"delivered"}
        counts = [receiver.count(message_id) for message_id in ids]
        assert min(counts) >= 1
        duplicates = sum(c - 1 for c in counts)
        assert duplicates <= THREADS, (
            f"{duplicates} duplicates; at most the {THREADS} in-flight requests may repeat"
        )
        assert all(d.verified for d in receiver.deliveries), [
            (d.error, d.headers, d.body) for d in receiver.deliveries if not d.verified
        ]
