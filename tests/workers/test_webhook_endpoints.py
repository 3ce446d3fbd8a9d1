"""Configured webhook endpoints end to end: events fanned out through the real RabbitMQ to
real local HTTP receivers that verify signatures with the ``standardwebhooks`` package."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from producer.service import NotificationService
from producer.webhooks import WebhookAdmin
from shared import netguard
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.session import session_scope
from tests.conftest import WEBHOOK_SECRET, Fleet, Queues, final_status
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until
from tests.webhook_events import attempts_of, create_endpoint, emit, endpoint_row


def receiver_with_endpoint(settings: Settings, **fields: object) -> tuple[WebhookReceiver, str]:
    receiver = WebhookReceiver().start()
    endpoint_id, secret = create_endpoint(settings, receiver.url, **fields)
    receiver.set_secret(secret)
    return receiver, endpoint_id


def test_each_subscribed_endpoint_gets_its_own_signed_message(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given endpoints for all events, for ``order.*``, for another type, and an inactive one,
    when ``order.created`` is emitted, then exactly the two subscribed active endpoints get
    a Standard Webhooks body signed with their own secret, with the message id as webhook-id."""
    every, every_id = receiver_with_endpoint(settings)
    orders, orders_id = receiver_with_endpoint(settings, eventTypes=["order.*"])
    other, _ = receiver_with_endpoint(settings, eventTypes=["user.registered"])
    inactive, _ = receiver_with_endpoint(settings, active=False)
    fleet(settings, [Channel.WEBHOOK])
    try:
        ids = emit(settings, "order.created", {"orderId": "order-123"}, user_id="user-1")

        assert len(ids) == 2
        got = every.wait_for(1)[0], orders.wait_for(1)[0]
        for delivery in got:
            assert delivery.verified, delivery.error
            assert delivery.json["type"] == "order.created"
            assert delivery.json["data"] == {"orderId": "order-123"}
            assert delivery.json["timestamp"].endswith("+00:00")
            assert delivery.headers["webhook-id"] in ids
        assert {d.headers["webhook-id"] for d in got} == set(ids)
        service = NotificationService(settings)
        assert all(final_status(service, i)["status"] == "delivered" for i in ids)
        assert other.deliveries == [] and inactive.deliveries == []
        assert attempts_of(settings, ids[0])[0].configuration_id in {every_id, orders_id}
    finally:
        for r in (every, orders, other, inactive):
            r.stop()


def test_old_and_new_secret_both_verify_during_the_grace_period(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a regenerated secret, then deliveries carry two signatures and verify with the
    old and the new secret alike; after a regeneration without grace, only the new one."""
    receiver, endpoint_id = receiver_with_endpoint(settings)
    admin = WebhookAdmin(settings)
    old_secret = create_secret_of(settings, endpoint_id)
    old = Webhook(old_secret)
    fleet(settings, [Channel.WEBHOOK])
    try:
        new_secret = admin.regenerate_secret(endpoint_id, {})["secret"]
        assert new_secret != old_secret
        receiver.set_secret(new_secret)
        emit(settings, "order.created", {"n": 1})
        first = receiver.wait_for(1)[0]
        assert first.verified
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        old.verify(first.body, first.headers)
        Webhook(new_secret).verify(first.body, first.headers)

        newest = admin.regenerate_secret(endpoint_id, {"gracePeriodMs": 0})["secret"]
        emit(settings, "order.created", {"n": 2})
        second = receiver.wait_for(2)[1]
        Webhook(newest).verify(second.body, second.headers)
        with pytest.raises(Exception, match="No matching signature"):
            Webhook(new_secret).verify(second.body, second.headers)
    finally:
        receiver.stop()


def create_secret_of(settings: Settings, endpoint_id: str) -> str:
    """The endpoint's current secret, unsealed (tests only; the API never shows it again)."""
    from shared.webhook_endpoints import signing_secrets

    return signing_secrets(endpoint_row(settings, endpoint_id), settings)[0]


def test_a_hanging_endpoint_does_not_delay_the_others(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given three endpoints of which one never answers, then the other two are delivered
    while the hanging one's first attempt is still waiting for its timeout."""
    fast_a, _ = receiver_with_endpoint(settings)
    fast_b, _ = receiver_with_endpoint(settings)
    hanging, _ = receiver_with_endpoint(settings)
    hanging.delay = 60.0  # far past WEBHOOK_TIMEOUT; stop() wakes it
    fleet(settings, [Channel.WEBHOOK], threads=4)
    try:
        ids = emit(settings, "order.created", {"orderId": "o-1"})
        hanging_id = hanging.wait_for(1)[0].headers["webhook-id"]

        fast_a.wait_for(1)
        fast_b.wait_for(1)
        service = NotificationService(settings)
        for message_id in set(ids) - {hanging_id}:
            assert final_status(service, message_id)["status"] == "delivered"
        assert attempts_of(settings, hanging_id) == []
    finally:
        for r in (fast_a, fast_b, hanging):
            r.stop()


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
            with session_scope(settings.database_url) as session:
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


def test_dns_rebinding_gets_nothing_at_send_time(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given private networks refused and a name that resolved to a public address when the
    endpoint was saved, when it resolves to loopback at send time, then nothing is sent and
    the message fails saying why."""
    settings = make_settings(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false")
    answers = iter(["93.184.216.34"])
    monkeypatch.setattr(
        netguard, "resolve", lambda host, port: [ipaddress.ip_address(next(answers, "127.0.0.1"))]
    )
    receiver = WebhookReceiver().start()
    port = receiver.url.split(":")[2].split("/")[0]
    create_endpoint(settings, f"http://rebind.example:{port}/hooks")
    fleet(settings, [Channel.WEBHOOK])
    try:
        (message_id,) = emit(settings, "order.created", {"n": 1})

        view = final_status(NotificationService(settings), message_id)
        assert (view["status"], view["errorCode"]) == ("failed", "http_address_refused")
        assert "rebind.example resolves to 127.0.0.1, which is loopback" in view["lastError"]
        assert receiver.deliveries == []
    finally:
        receiver.stop()


def test_an_allow_listed_subnet_is_reached_with_the_host_name_kept(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given private networks refused but 127.0.0.1/32 allow-listed, then a name resolving to
    it is delivered, connected to the checked address with the Host header unchanged."""
    settings = make_settings(WEBHOOK_ALLOW_PRIVATE_NETWORKS="false", WEBHOOK_ALLOWED_SUBNETS="127.0.0.1/32")
    monkeypatch.setattr(netguard, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    receiver = WebhookReceiver().start()
    port = receiver.url.split(":")[2].split("/")[0]
    _, secret = create_endpoint(settings, f"http://hooks.example:{port}/hooks")
    receiver.set_secret(secret)
    fleet(settings, [Channel.WEBHOOK])
    try:
        emit(settings, "order.created", {"n": 1})

        delivery = receiver.wait_for(1)[0]
        assert delivery.verified
        assert delivery.headers["host"] == f"hooks.example:{port}"
        message_id = delivery.headers["webhook-id"]
        wait_until(lambda: len(attempts_of(settings, message_id)) == 1, message="attempt not logged")
        timings = attempts_of(settings, message_id)[0].timings
        assert timings is not None and {"dns", "connect", "first_byte"} <= set(timings)
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


def test_the_rate_limit_holds_messages_back_without_using_attempts(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an endpoint limited to one request per second, when three events are emitted at
    once, then all three are delivered on their first attempt, spread over distinct
    one-second windows."""
    receiver, _ = receiver_with_endpoint(settings, rateLimitPerSecond=1)
    fleet(settings, [Channel.WEBHOOK])
    try:
        ids = [emit(settings, "order.created", {"n": n})[0] for n in range(3)]

        got = receiver.wait_for(3, timeout=15)
        service = NotificationService(settings)
        assert [final_status(service, i)["attempts"] for i in ids] == [1, 1, 1]
        assert got[2].received_at - got[0].received_at >= 1.0
    finally:
        receiver.stop()


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

        with session_scope(settings.database_url) as session:
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


def test_an_ordered_endpoint_delivers_each_key_in_order_one_at_a_time(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an ordered endpoint and a first message of key A that keeps failing, then the
    later messages of key A wait (without using attempts) while key B goes ahead; once the
    first succeeds, key A arrives in order."""
    receiver, _ = receiver_with_endpoint(settings, ordered=True, retryScheduleMs=[200] * 15)
    receiver.respond_next(503, times=None, match=lambda body: body["data"]["n"] == 1)
    fleet(settings, [Channel.WEBHOOK], threads=4)
    try:
        a1, a2, a3 = (emit(settings, "order.updated", {"orderingKey": "A", "n": n})[0] for n in (1, 2, 3))
        (b1,) = emit(settings, "order.updated", {"orderingKey": "B", "n": 4})
        service = NotificationService(settings)

        assert final_status(service, b1)["status"] == "delivered"
        wait_until(lambda: receiver.count(a1) >= 2, message="the first message was not retried")
        assert receiver.count(a2) == 0 and receiver.count(a3) == 0

        receiver.clear_answers()
        assert [final_status(service, m)["status"] for m in (a1, a2, a3)] == ["delivered"] * 3
        key_a = [d.json["data"]["n"] for d in receiver.deliveries if d.json["data"]["orderingKey"] == "A"]
        assert key_a[-3:] == [1, 2, 3] and set(key_a[:-2]) == {1}
        assert [final_status(service, m)["attempts"] for m in (a2, a3)] == [1, 1]
    finally:
        receiver.stop()


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
