"""Configured webhook endpoints when receivers fail: the retry schedule, Retry-After, 410
Gone, endpoint health and disabling (with its notices), the circuit breaker, and retries that
survive a fleet restart. Real RabbitMQ, PostgreSQL and local HTTP receivers."""

from __future__ import annotations

import socket
from collections.abc import Callable

from sqlalchemy import select

from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import WEBHOOK_SECRET, Fleet, Queues, final_status
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until
from tests.webhook_events import attempts_of, create_endpoint, emit, endpoint_row, receiver_with_endpoint


def test_failures_follow_the_endpoints_retry_schedule(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an endpoint with a 300 ms, 600 ms schedule that fails twice, then it is tried
    three times with the same webhook-id, each retry no sooner than its delay minus jitter,
    every attempt is logged, and the success clears the endpoint's failure record."""
    receiver, endpoint_id = receiver_with_endpoint(settings, retryScheduleMs=[300, 600])
    receiver.respond_next(500, times=2, body=b"boom")
    fleet(settings, [Channel.WEBHOOK])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})
        got = receiver.wait_for(3, timeout=15)

        assert final_status(NotificationService(settings), message_id)["status"] == "delivered"
        assert {d.headers["webhook-id"] for d in got} == {message_id}
        assert got[1].received_at - got[0].received_at >= 0.3 * 0.8
        assert got[2].received_at - got[1].received_at >= 0.6 * 0.8
        logs = attempts_of(settings, message_id)
        assert [(a.attempt, a.response_status, a.success) for a in logs] == [
            (1, 500, False),
            (2, 500, False),
            (3, 200, True),
        ]
        assert logs[0].response_body == "boom" and logs[0].error_class == "http_500"
        assert logs[2].timings is not None and "first_byte" in logs[2].timings
        assert logs[0].request_headers["webhook-signature"] == "[redacted]"
        row = endpoint_row(settings, endpoint_id)
        assert row.consecutive_failures == 0 and row.failing_since is None
    finally:
        receiver.stop()


def test_retry_after_overrides_the_schedule(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given a 10-minute schedule and a 503 with ``Retry-After: 1``, then the retry comes
    after the receiver's second, not the schedule's ten minutes."""
    receiver, _ = receiver_with_endpoint(settings, retryScheduleMs=[600_000])
    receiver.respond_next(503, headers={"Retry-After": "1"})
    fleet(settings, [Channel.WEBHOOK])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})

        assert final_status(NotificationService(settings), message_id)["status"] == "delivered"
        assert receiver.count(message_id) == 2
    finally:
        receiver.stop()


def test_410_gone_disables_the_endpoint_at_once(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given an endpoint that answers 410, then the message fails without retry, the endpoint
    is disabled with the reason, and later events are not fanned out to it."""
    receiver, endpoint_id = receiver_with_endpoint(settings)
    receiver.respond_next(410, times=None)
    fleet(settings, [Channel.WEBHOOK])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})

        view = final_status(NotificationService(settings), message_id)
        assert (view["status"], view["attempts"], view["errorCode"]) == ("failed", 1, "http_410")
        row = endpoint_row(settings, endpoint_id)
        assert row.disabled_at is not None and not row.active
        assert row.disabled_reason is not None and "410" in row.disabled_reason
        assert emit(settings, "order.created", {"n": 2}) == []
    finally:
        receiver.stop()


def test_other_4xx_fail_without_retry_and_do_not_disable(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    receiver, endpoint_id = receiver_with_endpoint(settings)
    receiver.respond_next(400)
    fleet(settings, [Channel.WEBHOOK])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})

        view = final_status(NotificationService(settings), message_id)
        assert (view["status"], view["attempts"], view["errorCode"]) == ("failed", 1, "http_400")
        row = endpoint_row(settings, endpoint_id)
        assert row.disabled_at is None and row.consecutive_failures == 1 and row.failing_since is not None
    finally:
        receiver.stop()


def test_an_endpoint_failing_for_the_whole_period_is_disabled(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given WEBHOOK_DISABLE_AFTER of 1 ms and an endpoint that keeps failing, then after its
    second failure in a row it is disabled, with the time it started failing."""
    settings = make_settings(WEBHOOK_DISABLE_AFTER="1")
    receiver, endpoint_id = receiver_with_endpoint(settings)
    receiver.respond_next(500, times=None)
    fleet(settings, [Channel.WEBHOOK])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})

        assert final_status(NotificationService(settings), message_id)["status"] == "failed"
        row = endpoint_row(settings, endpoint_id)
        assert row.disabled_at is not None and row.failing_since is not None
        assert row.disabled_reason is not None and "failing since" in row.disabled_reason
    finally:
        receiver.stop()


def test_a_fleet_restart_during_a_long_retry_delay_still_delivers(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], queues: Queues
) -> None:
    """Given a retry delay longer than BROKER_DELAY_LIMIT, then the message waits in the
    database (not the broker), and a fleet stopped and started again delivers it when due,
    with the same webhook-id."""
    settings = make_settings(BROKER_DELAY_LIMIT="200")
    receiver, _ = receiver_with_endpoint(settings, retryScheduleMs=[2_000])
    receiver.respond_next(500)
    first = fleet(settings, [Channel.WEBHOOK])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})
        receiver.wait_for(1)

        def parked() -> bool:
            with system_scope(settings.database_url) as session:
                row = session.get(NotificationLog, message_id)
                return row is not None and row.due_at is not None

        wait_until(parked, message="the retry was not parked in the database")
        first.stop()
        assert queues.depths(["webhook", "webhook.DQ"]) == {"webhook": 0, "webhook.DQ": 0}

        fleet(settings, [Channel.WEBHOOK])
        assert final_status(NotificationService(settings), message_id, timeout=20)["status"] == "delivered"
        assert receiver.count(message_id) == 2
        assert all(d.verified for d in receiver.deliveries)
    finally:
        receiver.stop()


def test_a_dead_endpoint_opens_its_circuit_breaker(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given a breaker threshold of 2 and an endpoint refusing connections, then after two
    failed attempts the next ones are held back without a request (``circuit_open``)."""
    settings = make_settings(
        WEBHOOK_BREAKER_THRESHOLD="2", WEBHOOK_BREAKER_COOLDOWN="60000", WEBHOOK_RETRY_SCHEDULE="50,50,50,50"
    )
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    create_endpoint(settings, f"http://127.0.0.1:{port}/dead")
    fleet(settings, [Channel.WEBHOOK])

    (message_id,) = emit(settings, "order.created", {"n": 1})

    def codes() -> list[str | None]:
        return [a.error_class for a in attempts_of(settings, message_id)]

    wait_until(lambda: len(codes()) >= 3, message=lambda: f"attempts so far: {codes()}")
    assert codes()[:3] == ["http_connection", "http_connection", "circuit_open"]


def test_the_owner_and_operations_are_told_when_the_endpoint_is_disabled(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given an endpoint with an owner address that answers 410, and an operational webhook,
    then an email telling the owner why is queued with the disabling and sent by the email
    pool, and the operational webhook gets a notice signed with WEBHOOK_SECRET."""
    ops = WebhookReceiver(WEBHOOK_SECRET).start()
    settings = make_settings(WEBHOOK_ALERT_URL=ops.url)
    receiver, endpoint_id = receiver_with_endpoint(settings, ownerEmail="owner@example.com")
    receiver.respond_next(410)
    fleet(settings, [Channel.WEBHOOK, Channel.EMAIL])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})
        service = NotificationService(settings)
        assert final_status(service, message_id)["status"] == "failed"

        with system_scope(settings.database_url) as session:
            notice = session.scalars(
                select(NotificationLog).where(NotificationLog.channel == Channel.EMAIL.value)
            ).one()
            notice_id, payload = notice.id, notice.payload
        assert payload["to"] == "owner@example.com"
        assert endpoint_id in payload["text"] and "410 Gone" in payload["text"]
        assert final_status(service, notice_id)["status"] in {"sent", "delivered"}
        alert = ops.wait_for(1)[0]
        assert alert.verified and alert.json["type"] == "webhook.endpoint.disabled"
        assert alert.json["data"]["configurationId"] == endpoint_id
    finally:
        receiver.stop()
        ops.stop()


def test_concurrent_attempts_to_one_endpoint_record_their_outcomes_once(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given ten messages to one endpoint failing at the same time on eight threads, then each
    outcome is recorded at the first try (the endpoint's health row is locked without
    deadlocking the delivery-log inserts), so no message is sent twice."""
    settings = make_settings(WEBHOOK_BREAKER_THRESHOLD="100")
    receiver, endpoint_id = receiver_with_endpoint(settings)
    receiver.respond_next(400, times=None)
    fleet(settings, [Channel.WEBHOOK], threads=8)
    try:
        ids = [emit(settings, "order.created", {"n": n})[0] for n in range(10)]

        service = NotificationService(settings)
        assert [final_status(service, i)["status"] for i in ids] == ["failed"] * 10
        assert [receiver.count(i) for i in ids] == [1] * 10
        assert endpoint_row(settings, endpoint_id).consecutive_failures == 10
    finally:
        receiver.stop()
