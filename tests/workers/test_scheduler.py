"""The scheduler: parked messages are published when due, lost ones are rescued."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from producer.service import NotificationService
from shared import tracking
from shared.broker import publish
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import system_scope
from shared.payloads import InAppPayload, Stored
from tests.conftest import Fleet, Queues, final_status
from tests.poison import POISON_PAYLOAD


def insert_without_publishing(settings: Settings, **changes: object) -> str:
    """A row as the producer writes it, but never published: what a crash between the
    insert and the publish leaves behind."""
    new = tracking.NewMessage(
        channel=Channel.IN_APP,
        recipient="user-lost",
        user_id="user-lost",
        payload=Stored(InAppPayload(title="Lost", message="and found")),
        max_attempts=3,
    )
    with system_scope(settings.database_url) as session:
        message_id, _ = tracking.create(session, new)
        row = tracking.get(session, message_id)
        assert row is not None
        for key, value in changes.items():
            setattr(row, key, value)
    return message_id


def test_a_message_the_broker_never_got_is_rescued(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given a queued row that was never published, when it is older than RESCUE_AFTER, then
    the scheduler publishes it and it is delivered."""
    settings = make_settings(RESCUE_AFTER="1000")
    message_id = insert_without_publishing(settings)
    fleet(settings, [Channel.IN_APP])

    view = final_status(NotificationService(settings), message_id, timeout=15)

    assert view["status"] == "delivered"
    assert view["attempts"] == 1


def test_a_parked_message_is_published_when_due(
    settings: Settings, fleet: Callable[..., Fleet], queues: Queues
) -> None:
    """Given a message parked for later, then nothing is on the broker until it is due, and it
    is delivered once the time comes."""
    due = utcnow() + timedelta(seconds=1)
    message_id = insert_without_publishing(settings, due_at=due, next_attempt_at=due)
    fleet(settings, [Channel.IN_APP])
    service = NotificationService(settings)

    assert service.get_status(message_id)["status"] == "queued"
    assert queues.depth("in_app") == 0

    view = final_status(service, message_id, timeout=15)
    assert view["status"] == "delivered"
    with system_scope(settings.database_url) as session:
        row = tracking.get(session, message_id)
        assert row is not None and row.sent_at is not None
        assert row.sent_at >= due


def test_a_poison_message_is_dead_lettered_and_failed(
    settings: Settings, fleet: Callable[..., Fleet], queues: Queues
) -> None:
    """Given a message whose handling crashes every time, then it is retried up to its limit,
    marked failed with the reason, lands in the dead-letter queue, and the queue keeps
    flowing for other messages."""
    running = fleet(settings, [Channel.IN_APP])
    poison = insert_without_publishing(settings, payload=POISON_PAYLOAD.to_json())
    publish(running.broker, Channel.IN_APP, poison)
    service = NotificationService(settings)
    healthy = service.send_in_app_notification(user_id="u-healthy", title="fine", message="fine")

    view = final_status(service, poison, timeout=20)
    assert view["status"] == "failed"
    assert view["attempts"] == 3
    assert view["errorCode"] == "internal_error"
    assert "NotFound" in (view["lastError"] or "")
    assert final_status(service, healthy)["status"] == "delivered"
    from tests.waiting import wait_until

    wait_until(lambda: queues.depth("in_app.XQ") == 1, timeout=10, message="poison message not dead-lettered")


def test_a_payload_unfit_for_its_channel_fails_at_once(
    settings: Settings, fleet: Callable[..., Fleet], queues: Queues
) -> None:
    """Given a stored in-app payload without a title (written by a buggy producer), then the
    first attempt fails it for good with ``invalid_payload``: no retry can make it readable,
    so it is neither retried nor dead-lettered."""
    running = fleet(settings, [Channel.IN_APP])
    unreadable = insert_without_publishing(settings, payload={"message": "no title"})
    publish(running.broker, Channel.IN_APP, unreadable)

    view = final_status(NotificationService(settings), unreadable)

    assert (view["status"], view["attempts"], view["errorCode"]) == ("failed", 1, "invalid_payload")
    assert "title" in (view["lastError"] or "")
    assert queues.depth("in_app.XQ") == 0


def test_a_long_retry_delay_survives_a_fleet_restart(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], queues: Queues
) -> None:
    """Given a retry delay longer than BROKER_DELAY_LIMIT, the message is parked in the
    database, not the broker; with the whole fleet stopped and started again, it is still
    delivered when due."""
    from tests.conftest import WEBHOOK_SECRET
    from tests.sinks.webhook_receiver import WebhookReceiver
    from tests.waiting import wait_until

    settings = make_settings(BROKER_DELAY_LIMIT="100", WEBHOOK_RETRY_DELAY="1500")
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.respond_next(503, times=1)
        first = fleet(settings, [Channel.WEBHOOK])
        service = NotificationService(settings)
        message_id = service.send_webhook(url=receiver.url, payload={"order": 1})

        def parked() -> bool:
            with system_scope(settings.database_url) as session:
                row = tracking.get(session, message_id)
                return row is not None and row.due_at is not None

        wait_until(parked, timeout=10, message="message was not parked")
        first.stop()
        assert sum(queues.depths().values()) == 0  # nothing waits in the broker

        fleet(settings, [Channel.WEBHOOK])
        view = final_status(service, message_id, timeout=20)

        assert view["status"] == "delivered"
        assert view["attempts"] == 2
        assert receiver.count(message_id) == 2
