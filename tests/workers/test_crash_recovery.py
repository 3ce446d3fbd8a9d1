"""A worker pool killed with SIGKILL while it holds messages loses none of them.

The pool runs exactly as in production (``kai-messaging worker webhook``, the Dramatiq CLI,
a separate process group) against a slow receiver, so that at the moment of the kill it has
requests in flight and more messages prefetched but unacknowledged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from producer.service import NotificationService
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import WEBHOOK_SECRET, final_status
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.workers.processes import ROOT, WorkerProcesses

MESSAGES = 40
THREADS = 8


@pytest.fixture
def pool(base_env: dict[str, str]) -> Iterator[WorkerProcesses]:
    env = {
        **os.environ,
        **base_env,
        "PYTHONPATH": str(ROOT),
        "DELIVERY_LEASE": "2000",
        "WEBHOOK_TIMEOUT": "5000",
    }
    p = WorkerProcesses(env)
    yield p
    p.stop_all()


def statuses(settings: Settings) -> dict[str, int]:
    with system_scope(settings.database_url) as session:
        rows = session.execute(
            select(NotificationLog.status, func.count()).group_by(NotificationLog.status)
        ).all()
    return {status: count for status, count in rows}


def test_sigkill_of_a_busy_pool_loses_no_message(pool: WorkerProcesses, make_settings) -> None:  # type: ignore[no-untyped-def]
    """Given 40 webhooks and a pool busy with a slow receiver, when the pool is SIGKILLed
    mid-flight and started again, then every message ends delivered and each reached the
    receiver at least once; only requests that were in flight at the kill may repeat."""
    settings: Settings = make_settings(DELIVERY_LEASE="2000")
    service = NotificationService(settings)
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.delay = 0.3
        ids = [service.send_webhook(url=receiver.url, payload={"n": n}) for n in range(MESSAGES)]

        first = pool.start(["webhook"], THREADS)
        receiver.wait_for(THREADS + 2, timeout=30)
        pool.kill(first)
        at_kill = statuses(settings)
        assert at_kill.get("delivered", 0) < MESSAGES, at_kill
        assert at_kill.get("processing", 0) > 0, at_kill  # it really held messages

        pool.start(["webhook"], THREADS)
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
