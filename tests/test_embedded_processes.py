"""The embedded defaults across processes: `kai-messaging run` in one terminal, the Python API
or the CLI in another, in the same directory. The in-process broker lives in the runner's
memory, yet a message sent from the second process is delivered at once, nothing else
started."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import running
from tests.gateway.server import free_port
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until

KAI_MESSAGING = str(Path(sys.executable).with_name("kai-messaging"))

#: The acceptance bound: a message sent from another process reaches its final status within
#: this many seconds of the send returning its id.
DELIVERED_WITHIN_S = 2.0

SEND_EMAIL = """
from producer import notification_service
print(notification_service.send_email(to="second@example.com", subject="{subject}", text="Hi"))
"""

SEND_WEBHOOK = """
from producer import notification_service
print(notification_service.send_webhook(url="{url}", payload={{"n": "barrier"}}))
"""

SEND_MANY = """
from producer import notification_service
for n in range({count}):
    print(notification_service.send_email(to=f"{name}{{n}}@example.com", subject="Many", text="Hi"))
"""


class Runner:
    """``kai-messaging run`` on the embedded defaults in ``workdir``, on the same port each
    time it is started."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.instance: running.Running | None = None

    def start(self) -> Runner:
        self.instance = running.start(self.workdir, "--port", str(self.port), env=self.env)
        return self

    def stop(self) -> None:
        if self.instance is not None:
            self.instance.stop()
            self.instance = None

    def client(self) -> httpx.Client:
        assert self.instance is not None
        return self.instance.client()


@pytest.fixture
def env() -> dict[str, str]:
    return running.embedded_env(WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")


@pytest.fixture
def runner(tmp_path: Path, env: dict[str, str]) -> Iterator[Runner]:
    started = Runner(tmp_path, env)
    try:
        yield started.start()
    finally:
        started.stop()


def python_api(workdir: Path, env: dict[str, str], code: str) -> tuple[str, float]:
    """Run ``code`` in a Python process of its own in ``workdir``: the id it printed, and when
    it ended."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip(), time.monotonic()


def cli(workdir: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], float]:
    done = subprocess.run(
        [KAI_MESSAGING, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout), time.monotonic()


def status_of(client: httpx.Client, message_id: str) -> str:
    return str(client.get(f"/api/messages/{message_id}").json()["status"])


def within_bound(condition: Callable[[], bool], since: float, what: str) -> None:
    """``condition`` holds no later than DELIVERED_WITHIN_S after ``since``."""
    remaining = max(0.0, since + DELIVERED_WITHIN_S - time.monotonic())
    wait_until(condition, timeout=remaining, message=what)


def test_an_email_sent_with_the_python_api_from_another_process_is_delivered_at_once(
    runner: Runner, env: dict[str, str]
) -> None:
    """Given `kai-messaging run` up, when a second process sends an email with the README's
    Python API, then within 2 s it is sent and its .eml is in var/outbox/."""
    message_id, sent_at = python_api(runner.workdir, env, SEND_EMAIL.format(subject="From afar"))

    with runner.client() as client:
        within_bound(lambda: status_of(client, message_id) == "sent", sent_at, "email not sent")
    assert "Subject: From afar" in (runner.workdir / "var" / "outbox" / f"{message_id}.eml").read_text()


def test_a_cli_send_and_a_cli_event_from_another_process_are_delivered_at_once(
    runner: Runner, env: dict[str, str]
) -> None:
    """Given `kai-messaging run` up with a template and a rule saved over HTTP, when a second
    terminal runs `kai-messaging send email` and `kai-messaging event`, then within 2 s the
    email is sent and the event's rule has produced its email, sent too."""
    with runner.client() as client:
        template = {"key": "hello", "channel": "email", "subject": "Hello {{name}}", "text": "Hi {{name}}"}
        assert (
            client.post("/api/templates", json={**template, "sampleData": {"name": "A"}}).status_code == 201
        )
        rule = {
            "name": "hello",
            "eventType": "visitor.greeted",
            "channels": ["email"],
            "templateKey": "hello",
        }
        assert client.post("/api/rules", json=rule).status_code == 201

        send = ["send", "email", "--to", "cli@example.com", "--subject", "By CLI", "--text", "Hi"]
        sent, sent_at = cli(runner.workdir, env, *send)
        within_bound(lambda: status_of(client, sent["id"]) == "sent", sent_at, "CLI email not sent")

        data = json.dumps({"email": "event@example.com", "name": "Bo"})
        event, posted_at = cli(
            runner.workdir, env, "event", "visitor.greeted", "--user-id", "u1", "--data", data
        )
        produced: list[str] = []

        def processed_and_sent() -> bool:
            produced[:] = client.get(f"/api/events/{event['id']}").json().get("messageIds") or []
            return bool(produced) and all(status_of(client, i) == "sent" for i in produced)

        within_bound(processed_and_sent, posted_at, "event not turned into a sent email")
    assert "Subject: By CLI" in (runner.workdir / "var" / "outbox" / f"{sent['id']}.eml").read_text()
    assert "Subject: Hello Bo" in (runner.workdir / "var" / "outbox" / f"{produced[0]}.eml").read_text()


def test_a_message_sent_while_the_runner_is_down_is_delivered_when_it_starts(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Given a directory whose runner has stopped, when a second process sends an email, then
    it waits queued, and once `kai-messaging run` is started again it is sent within 2 s."""
    runner = Runner(tmp_path, env).start()
    runner.stop()

    message_id, _ = python_api(tmp_path, env, SEND_EMAIL.format(subject="While down"))
    waiting, _ = cli(tmp_path, env, "status", message_id)
    assert waiting["status"] == "queued"

    try:
        runner.start()
        up_at = time.monotonic()
        with runner.client() as client:
            within_bound(lambda: status_of(client, message_id) == "sent", up_at, "email not sent after start")
    finally:
        runner.stop()
    assert "Subject: While down" in (tmp_path / "var" / "outbox" / f"{message_id}.eml").read_text()


def test_messages_sent_inside_the_runner_are_delivered_exactly_once(
    runner: Runner, env: dict[str, str]
) -> None:
    """Given `kai-messaging run` up, when webhooks are sent through its own gateway and then one
    more from a second process, then by the time that last one arrived each was delivered
    once: one request per webhook-id at the receiver and one attempt each."""
    with WebhookReceiver() as receiver, runner.client() as client:
        ids = []
        for n in range(5):
            answer = client.post("/api/messages/webhook", json={"url": receiver.url, "payload": {"n": n}})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        wait_until(lambda: all(status_of(client, i) == "delivered" for i in ids), timeout=20)

        barrier, sent_at = python_api(runner.workdir, env, SEND_WEBHOOK.format(url=receiver.url))
        within_bound(lambda: status_of(client, barrier) == "delivered", sent_at, "barrier not delivered")

        assert [receiver.count(i) for i in [*ids, barrier]] == [1] * 6
        assert [client.get(f"/api/messages/{i}").json()["attempts"] for i in [*ids, barrier]] == [1] * 6


def test_two_processes_sending_at_once_share_the_sqlite_database_with_the_runner(
    runner: Runner, env: dict[str, str]
) -> None:
    """Given `kai-messaging run` up, when two more processes send 40 emails each at the same
    time (three processes writing one SQLite file), then every email is sent, once."""
    senders = [
        subprocess.Popen(
            [sys.executable, "-c", SEND_MANY.format(count=40, name=name)],
            cwd=runner.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    ids = []
    for sender in senders:
        out, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err[-2000:]
        ids.extend(out.split())
    assert len(set(ids)) == 80

    outbox = runner.workdir / "var" / "outbox"
    wait_until(lambda: len(list(outbox.glob("*.eml"))) >= 80, timeout=30, message="not every email sent")
    with runner.client() as client:
        views = [client.get(f"/api/messages/{i}").json() for i in ids]
    assert {(v["status"], v["attempts"]) for v in views} == {("sent", 1)}
    assert sorted(path.stem for path in outbox.glob("*.eml")) == sorted(ids)


TAKE_MARKERS = """
import sqlite3
with sqlite3.connect("var/kai-messaging.db") as db:
    print(db.execute("DELETE FROM pending_publishes").rowcount)
"""


def test_messages_a_stopped_runner_held_in_memory_are_delivered_when_the_next_one_starts(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Given a runner that took a message's marker (published it into its memory) and ended
    before delivering it, when `kai-messaging run` starts again, then the message is sent
    within 2 s of the start, not after the 15-minute rescue of lost messages."""
    runner = Runner(tmp_path, env).start()
    runner.stop()
    message_id, _ = python_api(tmp_path, env, SEND_EMAIL.format(subject="Held in memory"))
    # What a runner leaves when it ends between taking the marker and delivering: the row
    # queued, the marker gone.
    taken, _ = python_api(tmp_path, env, TAKE_MARKERS)
    assert taken == "1"

    try:
        runner.start()
        up_at = time.monotonic()
        with runner.client() as client:
            within_bound(lambda: status_of(client, message_id) == "sent", up_at, "email not sent after start")
    finally:
        runner.stop()
