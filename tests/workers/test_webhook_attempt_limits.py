"""A webhook message ends, whatever happens to its endpoint or to the recording of its
attempts: deleting an endpoint ends its pending deliveries as failed ("endpoint deleted"),
an attempt in flight while its endpoint is deleted is recorded without it, and a message
never takes more attempts than its maximum, even when recording an outcome keeps failing.
All with the real worker on the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from producer.service import NotificationService
from producer.webhooks import WebhookAdmin
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import APP_ROLE, Fleet, final_status
from tests.waiting import wait_until
from tests.webhook_events import attempts_of, emit, receiver_with_endpoint


def test_deleting_an_endpoint_ends_its_pending_deliveries(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a delivery waiting for its next retry, when its endpoint is deleted, then the
    delivery is failed at once with the reason, instead of waiting for attempts that can
    never go anywhere."""
    receiver, endpoint_id = receiver_with_endpoint(settings, retryScheduleMs=[600_000] * 7)
    receiver.respond_next(503, times=None)
    fleet(settings, [Channel.WEBHOOK])
    service = NotificationService(settings)
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})
        wait_until(
            lambda: (
                service.get_status(message_id)["status"] == "queued"
                and len(attempts_of(settings, message_id)) == 1
            ),
            message="the first attempt did not fail into a pending retry",
        )

        WebhookAdmin(settings).delete(endpoint_id)

        view = final_status(service, message_id, timeout=10)
        assert (view["status"], view["errorCode"], view["attempts"]) == ("failed", "endpoint_deleted", 1)
        assert "deleted" in view["lastError"]
        assert [a.configuration_id for a in attempts_of(settings, message_id)] == [None]
    finally:
        receiver.stop()


def test_an_attempt_in_flight_when_its_endpoint_is_deleted_is_recorded_then_ends(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an attempt waiting for the receiver's answer, when the endpoint is deleted
    meanwhile, then the attempt's failure is recorded (its log row without the endpoint)
    and the message fails as "endpoint deleted" at its next attempt, within its maximum."""
    receiver, endpoint_id = receiver_with_endpoint(settings, retryScheduleMs=[50] * 7)
    receiver.respond_next(503, times=None)
    receiver.delay = 1.0
    fleet(settings, [Channel.WEBHOOK])
    service = NotificationService(settings)
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})
        receiver.wait_for(1)

        WebhookAdmin(settings).delete(endpoint_id)

        view = final_status(service, message_id, timeout=15)
        assert (view["status"], view["errorCode"]) == ("failed", "endpoint_deleted")
        assert view["attempts"] <= 8
        logged = attempts_of(settings, message_id)
        assert logged[0].error_class == "http_503"
        assert {a.configuration_id for a in logged} == {None}
        assert receiver.count(message_id) == 1
    finally:
        receiver.stop()


@pytest.fixture
def delivery_log_writes_refused(database_url: str) -> Iterator[None]:
    """The application role may not write delivery log rows: every attempt's outcome then
    fails to record (its transaction rolls back), as when the database refuses the write."""
    owner = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f"REVOKE INSERT ON webhook_delivery_logs FROM {APP_ROLE}")
    try:
        yield
    finally:
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute(f"GRANT INSERT ON webhook_delivery_logs TO {APP_ROLE}")


@pytest.mark.usefixtures("delivery_log_writes_refused")
def test_attempts_never_pass_the_maximum_when_outcomes_cannot_be_recorded(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given outcomes that cannot be recorded (so each message stays ``processing`` until its
    lease runs out), then the message is attempted at most its maximum number of times and
    then ends as failed, saying its attempts were used up."""
    receiver, _ = receiver_with_endpoint(settings, retryScheduleMs=[50])
    receiver.respond_next(503, times=None)
    fleet(settings, [Channel.WEBHOOK])
    service = NotificationService(settings)
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})
        view: dict[str, object] = {}

        def ended_or_overrun() -> bool:
            nonlocal view
            view = service.get_status(message_id)
            return view["status"] == "failed" or int(view["attempts"]) > 2  # type: ignore[call-overload]

        wait_until(ended_or_overrun, timeout=40, message=lambda: f"message still {view}")

        assert (view["status"], view["attempts"], view["errorCode"]) == ("failed", 2, "attempts_exhausted")
        assert receiver.count(message_id) == 2
    finally:
        receiver.stop()
