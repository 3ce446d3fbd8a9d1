"""Scheduled sends taken ahead of their time (SCHEDULER_LOOKAHEAD) on the real broker and
workers: queued early with a relay marker dated at their time, published when due and not
before, still cancelable until a worker takes them; parked retries and delayed sends taken
ahead the same way; given back when their scheduler stops,
and published by the relay when their scheduler died holding them; the deliveries of the
scheduler's process wait while a burst of them is published."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import func, select, update

from producer.service import NotificationService
from shared import tracking
from shared.broker import get_broker
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog, PendingPublish, utcnow
from shared.db.rls import system_scope
from shared.errors import NotScheduled
from shared.payloads import InAppPayload, Stored
from tests.conftest import Fleet, Queues, final_status
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.test_tracking import row
from tests.waiting import wait_until
from workers.scheduler import Scheduler, SchedulerMiddleware


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def marker(settings: Settings, message_id: str) -> datetime | None:
    """When the message's relay marker counts from, or None without one."""
    with system_scope(settings.database_url) as session:
        return session.scalar(select(PendingPublish.created_at).where(PendingPublish.id == message_id))


def staged(settings: Settings, message_id: str) -> bool:
    return row(settings.database_url, message_id).status == "queued"


def test_a_send_taken_ahead_waits_queued_and_is_delivered_at_its_time_not_before(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given a 4 s lookahead and a webhook due in 2 s, then the scheduler takes it at once:
    ``queued`` with its due time and a relay marker dated then; it is delivered once, at or
    after its time, and the marker is gone."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="4000")
    service = NotificationService(settings)
    at = utcnow() + timedelta(seconds=2)
    message_id = service.send_webhook(url=receiver.url, payload={"n": 1}, send_at=at)
    fleet(settings, [Channel.WEBHOOK])

    wait_until(lambda: staged(settings, message_id), timeout=1.5, message="not taken ahead")
    taken = row(settings.database_url, message_id)
    assert (taken.due_at, taken.next_attempt_at, taken.attempts) == (None, at, 0)
    assert marker(settings, message_id) == at
    assert service.get_status(message_id)["sendAt"] == at.isoformat()
    assert receiver.deliveries == []

    view = final_status(service, message_id)
    assert (view["status"], view["attempts"]) == ("delivered", 1)
    sent_at = row(settings.database_url, message_id).sent_at
    assert sent_at is not None and sent_at >= at
    # Removed after the confirm, in a transaction of its own, so it may outlive the delivery
    # by a moment; well before the relay would take it (PUBLISH_RELAY_AFTER, 5 s).
    wait_until(lambda: marker(settings, message_id) is None, timeout=3, message="the marker stayed")
    assert len(receiver.deliveries) == 1


def test_a_send_taken_ahead_can_be_canceled_but_not_moved(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given a send taken ahead, then a reschedule is refused (it is on its way) while a
    cancel still ends it: it is never delivered, though its broker message goes out when due;
    a control send due after it is delivered."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="4000")
    service = NotificationService(settings)
    canceled = service.send_webhook(url=receiver.url, payload={"n": "canceled"}, delay_ms=1500)
    control = service.send_webhook(url=receiver.url, payload={"n": "control"}, delay_ms=2500)
    fleet(settings, [Channel.WEBHOOK])
    wait_until(lambda: staged(settings, canceled), timeout=1.2, message="not taken ahead")

    with pytest.raises(NotScheduled, match="is queued"):
        service.reschedule(canceled, delay_ms=60_000)
    assert service.cancel(canceled)["status"] == "canceled"

    assert final_status(service, control)["status"] == "delivered"
    assert service.get_status(canceled)["status"] == "canceled"
    assert [d.json["n"] for d in receiver.deliveries] == ["control"]
    # Published when due (its marker removed), and the claim refused it.
    wait_until(lambda: marker(settings, canceled) is None, timeout=3, message="the marker stayed")


def test_a_stopping_scheduler_gives_back_what_it_took_ahead(make_settings: Callable[..., Settings]) -> None:
    """Given a scheduler holding sends it took ahead, when it stops, then they are
    ``scheduled`` again at their own time, with no relay marker left."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="60000")
    service = NotificationService(settings)
    at = utcnow() + timedelta(seconds=30)
    ids = [
        service.send_in_app_notification(
            user_id="u1", title="t", message=f"m{n}", send_at=at + timedelta(seconds=n)
        )
        for n in range(3)
    ]
    scheduler = Scheduler(settings, get_broker(settings), [Channel.IN_APP])
    assert scheduler.stage() == 3
    assert all(staged(settings, i) for i in ids)

    scheduler.stop()

    for n, message_id in enumerate(ids):
        back = row(settings.database_url, message_id)
        assert (back.status, back.due_at) == ("scheduled", at + timedelta(seconds=n))
        assert marker(settings, message_id) is None


def parked_in_app(settings: Settings, at: datetime, *, attempts: int) -> str:
    """An in-app message parked in the database until ``at`` after ``attempts`` attempts: a
    rule's delayed send (0) or a long retry (1 and more)."""
    with system_scope(settings.database_url) as session:
        message_id, _ = tracking.create(
            session,
            tracking.NewMessage(
                channel=Channel.IN_APP,
                recipient="u1",
                user_id="u1",
                payload=Stored(InAppPayload(title="t", message="m")),
                max_attempts=5,
                due_at=at,
            ),
        )
        session.execute(
            update(NotificationLog).where(NotificationLog.id == message_id).values(attempts=attempts)
        )
    return message_id


def test_parked_messages_are_taken_ahead_and_published_at_their_time(
    make_settings: Callable[..., Settings], queues: Queues
) -> None:
    """Given a parked retry and a rule's delayed send due in a few seconds and a scheduler
    whose ticks are a minute apart, then it takes both ahead (relay markers dated at their
    time) and publishes them when due, dated then, not at its next tick."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="60000", SCHEDULER_INTERVAL="60000")
    at = utcnow() + timedelta(seconds=2)
    ids = {parked_in_app(settings, at, attempts=1), parked_in_app(settings, at, attempts=0)}
    scheduler = Scheduler(settings, get_broker(settings), [Channel.IN_APP])
    try:
        assert scheduler.stage() == 2
        for message_id in ids:
            taken = row(settings.database_url, message_id)
            assert (taken.status, taken.due_at, taken.next_attempt_at) == ("queued", None, at)
            assert marker(settings, message_id) == at
        assert scheduler.release() == 0  # not yet due
        wait_until(lambda: utcnow() >= at, timeout=3, message="the time never came")

        assert scheduler.release() == 2
    finally:
        scheduler.stop()
    published = queues.take(Channel.IN_APP.queue_name)
    assert {m.message_id for m in published} == ids
    assert {m.message_timestamp for m in published} == {int(at.timestamp() * 1000)}
    assert all(marker(settings, message_id) is None for message_id in ids)


def test_a_stopping_scheduler_parks_again_the_parked_messages_it_took(
    make_settings: Callable[..., Settings],
) -> None:
    """Given a scheduler holding a parked retry and a rule's delayed send it took ahead, when
    it stops, then both are parked again as they were (``queued``, due at their time, their
    attempts unchanged), with no relay marker left."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="60000")
    at = utcnow() + timedelta(seconds=30)
    retry, delayed = parked_in_app(settings, at, attempts=2), parked_in_app(settings, at, attempts=0)
    scheduler = Scheduler(settings, get_broker(settings), [Channel.IN_APP])
    assert scheduler.stage() == 2

    scheduler.stop()

    for message_id, attempts in ((retry, 2), (delayed, 0)):
        back = row(settings.database_url, message_id)
        assert (back.status, back.due_at, back.attempts) == ("queued", at, attempts)
        assert marker(settings, message_id) is None


def test_sends_held_by_a_scheduler_that_died_go_out_through_the_relay(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given a scheduler that took two sends ahead and died before their time (never
    stopped), then the relay of another worker publishes them PUBLISH_RELAY_AFTER past their
    time, and each is delivered once."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="4000", PUBLISH_RELAY_AFTER="500")
    service = NotificationService(settings)
    at = utcnow() + timedelta(seconds=1)
    ids = [service.send_webhook(url=receiver.url, payload={"n": n}, send_at=at) for n in range(2)]
    dead = Scheduler(settings, get_broker(settings), [Channel.WEBHOOK])
    assert dead.stage() == 2  # and then nothing more from it

    fleet(settings, [Channel.WEBHOOK])

    for message_id in ids:
        view = final_status(service, message_id)
        assert (view["status"], view["attempts"]) == ("delivered", 1)
        sent_at = row(settings.database_url, message_id).sent_at
        assert sent_at is not None and sent_at >= at + timedelta(milliseconds=500)
    assert sorted(d.json["n"] for d in receiver.deliveries) == [0, 1]


def test_a_burst_due_together_goes_out_in_one_publish_dated_at_its_time(
    make_settings: Callable[..., Settings], queues: Queues
) -> None:
    """Given 1,200 sends due the same instant and taken ahead (more than one staging batch),
    when they are due, then one release puts each on the queue once, its broker message
    dated at its due time, and leaves no relay marker behind."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="60000")
    service = NotificationService(settings)
    at = utcnow() + timedelta(seconds=6)  # room for storing and taking 1,200 on a busy machine
    item = {"channel": "in_app", "user_id": "u1", "title": "t", "message": "m", "send_at": at}
    ids = {r["id"] for r in service.send_many([item] * 1_200)}
    scheduler = Scheduler(settings, get_broker(settings), [Channel.IN_APP])
    try:
        assert scheduler.stage() + scheduler.stage() == 1_200
        assert scheduler.release() == 0  # not yet due
        wait_until(lambda: utcnow() >= at, timeout=7, message="the time never came")

        assert scheduler.release() == 1_200
    finally:
        scheduler.stop()

    published = queues.take(Channel.IN_APP.queue_name)
    assert sorted(m.message_id for m in published) == sorted(ids)
    assert {m.message_timestamp for m in published} == {int(at.timestamp() * 1000)}
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(PendingPublish)) == 0


def test_without_a_broker_url_nothing_is_taken_ahead(make_settings: Callable[..., Settings]) -> None:
    """On the embedded broker a relay marker is published as soon as it is written, so the
    scheduler takes nothing ahead there."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="60000", BROKER_URL="")
    scheduler = Scheduler(settings, StubBroker(), [Channel.IN_APP])
    assert settings.embedded_broker
    assert scheduler.lookahead == timedelta(0)


def test_deliveries_of_the_process_wait_while_a_burst_is_published(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given sends taken ahead and due, when the scheduler publishes them, then a delivery
    thread of its process that starts a message meanwhile waits until the broker confirmed
    the burst, and one starting after it does not wait."""
    settings = make_settings(SCHEDULER_LOOKAHEAD="60000")
    service = NotificationService(settings)
    at = utcnow() + timedelta(seconds=2)
    item = {"channel": "in_app", "user_id": "u1", "title": "t", "message": "m", "send_at": at}
    service.send_many([item] * 50)
    middleware = SchedulerMiddleware(settings)
    scheduler = middleware.scheduler = Scheduler(settings, get_broker(settings), [Channel.IN_APP])
    assert scheduler._publisher is not None
    publish = scheduler._publisher.publish_encoded
    published = threading.Event()
    seen_when_let_through: list[bool] = []

    def delivery() -> None:
        middleware.before_process_message(scheduler.broker, None)
        seen_when_let_through.append(published.is_set())

    def publish_while_a_delivery_starts(*args: Any, **kwargs: Any) -> None:
        assert not scheduler.hold_for_burst(timeout=0)
        started.start()
        publish(*args, **kwargs)
        published.set()

    started = threading.Thread(target=delivery)
    monkeypatch.setattr(scheduler._publisher, "publish_encoded", publish_while_a_delivery_starts)
    try:
        assert scheduler.stage() == 50
        wait_until(lambda: utcnow() >= at, timeout=3, message="the time never came")
        assert scheduler.release() == 50
        started.join(timeout=10)
    finally:
        scheduler.stop()
    assert seen_when_let_through == [True]
    assert scheduler.hold_for_burst(timeout=0)
