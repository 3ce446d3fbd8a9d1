"""The embedded default (``make run``): one process, SQLite, an in-process broker, email and
SMS to ``var/outbox/``. Started exactly as the README does, in a fresh directory."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import running
from tests.gateway.server import free_port
from tests.readme import example_after
from tests.waiting import wait_until


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    instance = running.start(tmp_path, "--port", str(free_port()))
    try:
        yield instance.url, instance.key, instance.var
    finally:
        instance.stop()


def test_make_run_delivers_email_sms_and_in_app_on_embedded_defaults(embedded: tuple[str, str, Path]) -> None:
    """Given `kai-messaging run` with no service configured, when the README's curl requests
    are made, then the email and SMS land in var/outbox/ and every message reads sent or
    delivered."""
    url, key, var = embedded
    headers = {"Authorization": f"Bearer {key}"}
    sends = {
        "email": {
            "to": "user@example.com",
            "subject": "Welcome to KAI",
            "text": "Thanks!",
            "html": "<p>Thanks!</p>",
        },
        "sms": {"to": "+14155550100", "message": "Your verification code is: 123456"},
        "in-app": {"userId": "user-123", "title": "New Message", "message": "Hello", "type": "info"},
    }
    ids = {}
    for channel, body in sends.items():
        response = httpx.post(f"{url}/api/messages/{channel}", json=body, headers=headers, timeout=10)
        assert response.status_code == 202, response.text
        ids[channel] = response.json()["id"]

    statuses: dict[str, str] = {}

    def all_done() -> bool:
        for channel, message_id in ids.items():
            statuses[channel] = httpx.get(f"{url}/api/messages/{message_id}", headers=headers).json()[
                "status"
            ]
        return all(s in {"sent", "delivered"} for s in statuses.values())

    wait_until(all_done, timeout=20, message=lambda: f"statuses: {statuses}")
    assert statuses == {"email": "sent", "sms": "sent", "in-app": "delivered"}
    eml = (var / "outbox" / f"{ids['email']}.eml").read_text()
    assert "Subject: Welcome to KAI" in eml
    assert (var / "outbox" / f"{ids['sms']}.sms.json").exists()


def test_the_readme_batch_example_on_embedded_defaults(embedded: tuple[str, str, Path]) -> None:
    """Given the README's batch curl command, then the good message is queued and sent and the
    bad phone number is answered on its own."""
    url, key, var = embedded
    command = example_after("**Batches.**", "bash").replace("http://127.0.0.1:8000", url)

    answer = subprocess.run(
        ["bash", "-c", command], env={**os.environ, "KEY": key}, capture_output=True, text=True, timeout=30
    )

    results = json.loads(answer.stdout)["results"]
    assert results[1]["error"]["code"] == "validation_error"
    message_id = results[0]["id"]
    headers = {"Authorization": f"Bearer {key}"}
    wait_until(
        lambda: httpx.get(f"{url}/api/messages/{message_id}", headers=headers).json()["status"] == "sent",
        timeout=20,
    )
    assert "Subject: Hi" in (var / "outbox" / f"{message_id}.eml").read_text()


def test_make_run_turns_an_event_into_templated_messages(embedded: tuple[str, str, Path]) -> None:
    """Given a template and a rule saved over HTTP on the embedded defaults (for an event type
    the starter set has no rule for), when an event is posted, then the rule's email is
    rendered into var/outbox/."""
    url, key, var = embedded
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    template = {"key": "hello", "channel": "email", "subject": "Hello {{name}}", "text": "Hi {{name}}"}
    assert client.post("/api/templates", json={**template, "sampleData": {"name": "A"}}).status_code == 201
    rule = {"name": "hello", "eventType": "visitor.greeted", "channels": ["email"], "templateKey": "hello"}
    assert client.post("/api/rules", json=rule).status_code == 201

    posted = client.post(
        "/api/events",
        json={"eventType": "visitor.greeted", "userId": "u1", "data": {"email": "a@b.com", "name": "Bo"}},
    )
    assert posted.status_code == 202, posted.text

    event: dict[str, object] = {}

    def sent() -> bool:
        nonlocal event
        event = client.get(f"/api/events/{posted.json()['id']}").json()
        ids = event.get("messageIds") or []
        return bool(ids) and all(
            client.get(f"/api/messages/{i}").json()["status"] == "sent"
            for i in ids  # type: ignore[attr-defined]
        )

    wait_until(sent, timeout=20, message=lambda: f"event: {event}")
    (message_id,) = event["messageIds"]  # type: ignore[misc]
    assert "Subject: Hello Bo" in (var / "outbox" / f"{message_id}.eml").read_text()
    client.close()


def test_the_inbox_works_on_embedded_defaults(embedded: tuple[str, str, Path]) -> None:
    """Given `kai-messaging run` on SQLite, when two in-app notifications are sent, then the
    user's feed pages through them newest first and the unread count follows mark-as-read."""
    url, key, _ = embedded
    headers = {"Authorization": f"Bearer {key}"}
    as_user = {**headers, "X-User-Id": "user-7"}

    def count() -> int:
        return int(httpx.get(f"{url}/api/notifications/unread-count", headers=as_user).json()["count"])

    # One at a time: embedded workers may deliver two queued messages in either order.
    for expected, title in enumerate(("first", "second"), start=1):
        body = {"userId": "user-7", "title": title, "message": "hello"}
        assert httpx.post(f"{url}/api/messages/in-app", json=body, headers=headers).status_code == 202
        wait_until(lambda n=expected: count() == n, timeout=20, message=f"{title} never arrived")
    page = httpx.get(f"{url}/api/notifications", params={"limit": 1}, headers=as_user).json()
    rest = httpx.get(
        f"{url}/api/notifications", params={"limit": 1, "cursor": page["nextCursor"]}, headers=as_user
    ).json()
    assert [page["items"][0]["title"], rest["items"][0]["title"]] == ["second", "first"]
    assert rest["nextCursor"] is None
    marked = httpx.post(
        f"{url}/api/notifications/mark-as-read", json={"ids": [page["items"][0]["id"]]}, headers=as_user
    )
    assert marked.json() == {"updated": 1, "unreadCount": 1}
