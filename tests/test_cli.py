"""``kai-messaging``: the operator commands against the real services."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cli.main import main
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import Fleet, final_status


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_status_shows_depths_consumers_and_recent_outcomes(
    settings: Settings, fleet: Callable[..., Fleet], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a message waiting on the sms queue and one delivered in-app message, the status
    command reports the sms depth, the in-app consumers and the recent delivery."""
    service = NotificationService(settings)
    service.send_sms(to="+14155550100", message="waiting")
    fleet(settings, [Channel.IN_APP])
    final_status(service, service.send_in_app_notification(user_id="u1", title="t", message="m"))

    code, out = run(capsys, "status", "--json")

    assert code == 0
    rows = {row["queue"]: row for row in json.loads(out)}
    assert rows["sms"]["depth"] == 1
    assert rows["in_app"]["consumers"] >= 1
    assert rows["in_app"]["recent"] == {"delivered": 1}
    assert rows["email"]["dead_lettered"] == 0


def test_status_of_one_message(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    message_id = NotificationService(settings).send_sms(to="+14155550100", message="hi")

    code, out = run(capsys, "status", message_id)

    assert code == 0
    assert json.loads(out)["status"] == "queued"


def test_the_table_renders(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    code, out = run(capsys, "status")
    assert code == 0
    assert "in_app" in out and "dead-lettered" in out


def test_health_probe(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "health")
    assert code == 0
    assert json.loads(out) == {"database": "ok", "broker": "ok", "redis": "ok"}


def test_health_probe_fails_when_the_broker_is_unreachable(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.config import set_settings

    set_settings(make_settings(BROKER_URL="amqp://guest:guest@127.0.0.1:1/"))
    try:
        code, out = run(capsys, "health")
    finally:
        set_settings(None)
    assert code == 1
    assert json.loads(out)["broker"].startswith("unavailable")


def test_dlq_list_and_replay(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a message that exhausted its retries (dead-lettered and failed), `dlq list`
    shows it and `dlq replay` gives it a new round that delivers it."""
    from tests.conftest import WEBHOOK_SECRET
    from tests.sinks.webhook_receiver import WebhookReceiver
    from tests.waiting import wait_until

    settings = make_settings()
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.respond_next(503, times=3)
        fleet(settings, [Channel.WEBHOOK])
        service = NotificationService(settings)
        message_id = service.send_webhook(url=receiver.url, payload={"x": 1})
        assert final_status(service, message_id)["status"] == "failed"

        def listed() -> bool:
            code, out = run(capsys, "dlq", "list", "webhook")
            return code == 0 and message_id in out

        wait_until(listed, timeout=10, message="dead-lettered message not listed")
        code, out = run(capsys, "dlq", "replay", "webhook")
        assert code == 0 and json.loads(out) == {"replayed": 1}

        view = final_status(service, message_id)
        assert view["status"] == "delivered"
        assert view["attempts"] == 4
