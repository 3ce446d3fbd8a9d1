"""Scheduled sends through the Python API, on the real broker and worker: a message with
``send_at``/``delay_ms`` waits as ``scheduled``, unpublished, until the scheduler fires it;
it can be canceled or moved until then, and it survives a restart of the workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic.alias_generators import to_camel

from producer.enqueue import close_loop_acceptors
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog, UserNotificationPreference, utcnow
from shared.db.rls import system_scope
from shared.errors import NotCancelable, NotFound, NotScheduled, ValidationError
from shared.schedule import next_local
from tests.conftest import Fleet, Queues, final_status
from tests.gateway.databases import BACKENDS, on_backend
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """The settings of the run, on PostgreSQL or on the embedded default SQLite store."""
    return on_backend(request.param, settings, tmp_path)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def hook(receiver: WebhookReceiver, name: str, **fields: Any) -> dict[str, Any]:
    return {"url": receiver.url, "payload": {"name": name}, **fields}


def names(receiver: WebhookReceiver) -> list[str]:
    return [d.json["name"] for d in receiver.deliveries]


def test_a_scheduled_message_waits_unpublished_then_is_delivered_after_its_time(
    store: Settings, fleet: Callable[..., Fleet], queues: Queues, receiver: WebhookReceiver
) -> None:
    """Given a webhook scheduled 1.5 s ahead, then it is ``scheduled`` with its ``sendAt`` and
    nothing is on the broker; the worker delivers it once, not before its time."""
    service = NotificationService(store)
    at = utcnow() + timedelta(milliseconds=1500)
    message_id = service.send_webhook(**hook(receiver, "later"), send_at=at)

    view = service.get_status(message_id)
    assert (view["status"], view["sendAt"], view["timezone"]) == ("scheduled", at.isoformat(), None)
    assert queues.depth("webhook") == 0

    fleet(store, [Channel.WEBHOOK])
    assert final_status(service, message_id)["status"] == "delivered"
    assert names(receiver) == ["later"]
    with system_scope(store.database_url) as session:
        row = session.get(NotificationLog, message_id)
        assert row is not None and row.sent_at is not None and row.sent_at >= at


def test_a_message_canceled_before_its_time_is_never_delivered(
    store: Settings, fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given two messages scheduled a moment apart, when the first is canceled, then it ends
    ``canceled`` and stays so after the second (due later) was delivered."""
    service = NotificationService(store)
    canceled = service.send_webhook(**hook(receiver, "canceled"), delay_ms=800)
    control = service.send_webhook(**hook(receiver, "control"), delay_ms=1600)

    view = service.cancel(canceled)
    fleet(store, [Channel.WEBHOOK])

    assert (view["status"], view["completedAt"] is not None) == ("canceled", True)
    assert final_status(service, control)["status"] == "delivered"
    assert service.get_status(canceled)["status"] == "canceled"
    assert names(receiver) == ["control"]


def test_a_delivered_message_cannot_be_canceled_or_moved(
    settings: Settings, fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    service = NotificationService(settings)
    fleet(settings, [Channel.WEBHOOK])
    message_id = service.send_webhook(**hook(receiver, "now"))
    assert final_status(service, message_id)["status"] == "delivered"

    with pytest.raises(NotCancelable, match="is delivered"):
        service.cancel(message_id)
    with pytest.raises(NotScheduled, match="is delivered"):
        service.reschedule(message_id, delay_ms=1000)
    with pytest.raises(NotFound):
        service.cancel("00000000-0000-0000-0000-000000000000")


def test_a_queued_message_no_worker_took_can_be_canceled(
    settings: Settings, fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given a message sent at once while no worker runs, when it is canceled, then the
    worker that later takes its broker message does not deliver it."""
    service = NotificationService(settings)
    canceled = service.send_webhook(**hook(receiver, "canceled"))

    assert service.cancel(canceled)["status"] == "canceled"
    fleet(settings, [Channel.WEBHOOK])
    control = service.send_webhook(**hook(receiver, "control"))

    assert final_status(service, control)["status"] == "delivered"
    assert service.get_status(canceled)["status"] == "canceled"
    assert names(receiver) == ["control"]


def test_a_rescheduled_message_goes_at_its_new_time(
    store: Settings, fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given a message scheduled an hour ahead, when it is moved to 500 ms from now, then it
    is delivered then, with its new ``sendAt``."""
    service = NotificationService(store)
    message_id = service.send_webhook(**hook(receiver, "moved"), send_at=utcnow() + timedelta(hours=1))
    fleet(store, [Channel.WEBHOOK])

    moved = service.reschedule(message_id, delay_ms=500)

    assert moved["status"] == "scheduled"
    assert datetime.fromisoformat(moved["sendAt"]) < utcnow() + timedelta(minutes=1)
    assert final_status(service, message_id)["status"] == "delivered"
    assert names(receiver) == ["moved"]


def test_a_local_time_is_read_in_the_users_zone(settings: Settings) -> None:
    """Given a user whose preferences say Asia/Kathmandu, then ``09:00`` local is the next
    09:00 there, and the status names the zone; a user without preferences gets UTC."""
    with system_scope(settings.database_url) as session:
        session.add(UserNotificationPreference(user_id="u-ktm", timezone="Asia/Kathmandu"))
    service = NotificationService(settings)
    before = utcnow()

    local = service.get_status(
        service.send_in_app_notification(
            user_id="u-ktm", title="t", message="m", send_at={"localTime": "09:00"}
        )
    )
    default = service.get_status(
        service.send_in_app_notification(
            user_id="u-none", title="t", message="m", send_at={"local_time": "09:00"}
        )
    )

    expected = next_local("09:00", "Asia/Kathmandu", before)
    assert (local["status"], local["timezone"]) == ("scheduled", "Asia/Kathmandu")
    assert datetime.fromisoformat(local["sendAt"]) == expected
    assert datetime.fromisoformat(local["sendAt"]).astimezone(expected.tzinfo) == expected.astimezone(UTC)
    assert default["timezone"] == "UTC"
    assert datetime.fromisoformat(default["sendAt"]) == next_local("09:00", "UTC", before)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"send_at": "2020-01-01T00:00:00Z"}, "sendAt"),
        ({"send_at": "2999-01-01T00:00:00+01:00"}, "sendAt"),
        ({"send_at": "2026-12-24"}, "sendAt"),
        ({"send_at": "2026-12-24T09:00:00"}, "sendAt"),
        ({"send_at": datetime(2030, 1, 1)}, "sendAt"),  # naive: no zone to read it in
        ({"send_at": {"localTime": "9am"}}, "sendAt"),
        ({"delay_ms": -1}, "delayMs"),
        ({"delay_ms": 400 * 24 * 3_600_000}, "delayMs"),
        ({"delay_ms": 1000, "send_at": "2030-01-01T00:00:00Z"}, None),
    ],
)
def test_a_send_time_out_of_bounds_is_refused_and_nothing_is_stored(
    settings: Settings, fields: dict[str, Any], field: str | None
) -> None:
    service = NotificationService(settings)

    with pytest.raises(ValidationError) as refused:
        service.send_in_app_notification(user_id="u1", title="t", message="m", **fields)

    named = refused.value.details[0]["field"]
    assert (to_camel(named.split(".")[0]) if named else None) == field
    with system_scope(settings.database_url) as session:
        assert session.query(NotificationLog).count() == 0


def test_a_batch_schedules_its_items_each_for_its_own_time(settings: Settings) -> None:
    service = NotificationService(settings)
    at = utcnow() + timedelta(hours=2)

    results = service.send_many(
        [
            {"channel": "in-app", "userId": "u1", "title": "t", "message": "later", "sendAt": at.isoformat()},
            {"channel": "in-app", "userId": "u1", "title": "t", "message": "now"},
            {
                "channel": "in-app",
                "userId": "u1",
                "title": "t",
                "message": "past",
                "sendAt": "2020-01-01T00:00:00Z",
            },
        ]
    )

    assert results[0]["status"] == "scheduled"
    assert datetime.fromisoformat(results[0]["sendAt"]) == at
    assert results[1]["status"] == "queued"
    assert results[2]["error"]["code"] == "validation_error"
    assert service.get_status(results[0]["id"])["status"] == "scheduled"


def test_a_scheduled_message_survives_a_worker_restart_and_fires_once(
    settings: Settings, fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given a message scheduled 1.5 s ahead and a worker that stops before it is due, when a
    new worker starts, then the message is delivered exactly once."""
    service = NotificationService(settings)
    message_id = service.send_webhook(**hook(receiver, "survivor"), delay_ms=1500)
    first = fleet(settings, [Channel.WEBHOOK])
    first.stop()
    assert service.get_status(message_id)["status"] == "scheduled"

    fleet(settings, [Channel.WEBHOOK])

    view = final_status(service, message_id)
    assert (view["status"], view["attempts"]) == ("delivered", 1)
    wait_until(lambda: len(receiver.deliveries) >= 1, timeout=5, message="nothing delivered")
    assert names(receiver) == ["survivor"]


def test_cancels_racing_the_scheduler_end_in_exactly_one_outcome_each(
    settings: Settings, fleet: Callable[..., Fleet], receiver: WebhookReceiver
) -> None:
    """Given 200 webhooks due at the same moment and a worker whose scheduler fires them,
    when each is canceled around that moment, then every cancel that succeeded names a
    message that was never delivered, and every refused one a message delivered once."""
    service = NotificationService(settings)
    due = utcnow() + timedelta(milliseconds=1200)
    ids = [service.send_webhook(**hook(receiver, f"m{n}"), send_at=due) for n in range(200)]
    fleet(settings, [Channel.WEBHOOK])
    wait_until(lambda: utcnow() >= due - timedelta(milliseconds=150), timeout=10, message="clock")

    def cancel(message_id: str) -> bool:
        try:
            service.cancel(message_id)
        except NotCancelable:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        canceled = dict(zip(ids, pool.map(cancel, ids), strict=True))

    finals = {message_id: final_status(service, message_id, timeout=30)["status"] for message_id in ids}
    expected = {m: "canceled" if ok else "delivered" for m, ok in canceled.items()}
    assert finals == expected
    delivered = sum(1 for ok in canceled.values() if not ok)
    wait_until(lambda: len(receiver.deliveries) >= delivered, timeout=10, message="deliveries missing")
    by_name = {f"m{n}": message_id for n, message_id in enumerate(ids)}
    assert sorted(names(receiver)) == sorted(n for n, m in by_name.items() if not canceled[m])


@pytest.mark.anyio
async def test_the_async_twins_schedule_too(settings: Settings) -> None:
    service = NotificationService(settings)
    at = utcnow() + timedelta(minutes=10)
    item = {"channel": "in-app", "userId": "u1", "title": "t", "message": "m", "delayMs": 60_000}

    try:
        message_id = await service.asend_in_app_notification(user_id="u1", title="t", message="m", send_at=at)
        results = await service.asend_many([item])
    finally:
        await close_loop_acceptors()  # this test's loop ends with it: so do its connections

    assert service.get_status(message_id)["status"] == "scheduled"
    assert datetime.fromisoformat(service.get_status(message_id)["sendAt"]) == at
    assert results[0]["status"] == "scheduled"
