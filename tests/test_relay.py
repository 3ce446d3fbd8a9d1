"""The publish relay: a process killed between committing a message and publishing it loses
nothing; the scheduler publishes the message within PUBLISH_RELAY_AFTER."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog, PendingPublish
from shared.db.rls import system_scope
from tests.conftest import Fleet, final_status
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]

SEND = """
from producer import notification_service
notification_service.send_in_app_notification(user_id="relay-user", title="Hi", message="dying")
"""


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A TCP port that accepts AMQP connections and never answers: a publish to it hangs
    until the publisher's deadline, the window in which the test kills the process."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"amqp://guest:guest@127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def counts(settings: Settings) -> tuple[int, int]:
    with system_scope(settings.database_url) as session:
        rows = session.scalar(
            select(func.count()).select_from(NotificationLog).where(NotificationLog.user_id == "relay-user")
        )
        markers = session.scalar(select(func.count()).select_from(PendingPublish))
    return int(rows or 0), int(markers or 0)


def test_a_message_committed_but_never_published_is_relayed(
    base_env: dict[str, str],
    make_settings: Callable[..., Settings],
    fleet: Callable[..., Fleet],
    silent_broker: str,
) -> None:
    """Given a producer process SIGKILLed after its message's row committed and before the
    broker confirmed the publish, then the in-app pool delivers the message once the relay
    delay has passed, with nothing else started."""
    env = {**os.environ, **base_env, "BROKER_URL": silent_broker, "PYTHONPATH": str(ROOT)}
    producer = subprocess.Popen(
        [sys.executable, "-c", SEND], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    settings = make_settings(PUBLISH_RELAY_AFTER="500")
    try:
        wait_until(lambda: counts(settings) == (1, 1), timeout=20, message="the row was never committed")
    finally:
        producer.send_signal(signal.SIGKILL)
        producer.wait()

    started = time.monotonic()
    fleet(settings, [Channel.IN_APP])
    with system_scope(settings.database_url) as session:
        message_id = session.scalar(select(NotificationLog.id).where(NotificationLog.user_id == "relay-user"))
    assert message_id is not None

    view = final_status(NotificationService(settings), message_id, timeout=20)

    assert view["status"] == "delivered"
    assert time.monotonic() - started < 15
    # The relay removes the marker in the transaction that published it, which commits just
    # after the broker's confirm: a fast worker may have delivered by then.
    wait_until(lambda: counts(settings) == (1, 0), timeout=5, message="the marker stayed")


def test_a_confirmed_publish_leaves_no_marker(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given a message accepted normally, then its relay marker is gone once it is confirmed
    (so the relay never publishes it a second time)."""
    fleet(settings, [Channel.IN_APP])
    service = NotificationService(settings)

    message_id = service.send_in_app_notification(user_id="relay-user", title="Hi", message="normal")

    assert final_status(service, message_id)["status"] == "delivered"
    wait_until(lambda: counts(settings) == (1, 0), timeout=10, message="the marker stayed")
