"""Configured webhook endpoints end to end: events fanned out through the real RabbitMQ to
real local HTTP receivers that verify signatures with the ``standardwebhooks`` package:
subscriptions, signing and rotation, isolation between endpoints, rate limits, per-key
ordering, and the SSRF guard at send time."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook

from producer.service import NotificationService
from producer.webhooks import WebhookAdmin
from shared import netguard
from shared.channels import Channel
from shared.config import Settings
from shared.ratelimit import Decision, RateLimiter
from tests.conftest import Fleet, final_status
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until
from tests.webhook_events import attempts_of, create_endpoint, emit, endpoint_row, receiver_with_endpoint
from workers.webhook.pipeline import WebhookPipeline


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
    from shared.webhooks.endpoints import signing_secrets

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


def test_the_rate_limit_holds_messages_back_without_using_attempts(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an endpoint limited to one request per second, when three events are emitted at
    once, then the limiter holds some back and grants one per one-second window (so the
    third grant comes more than a second after the first), and all three are delivered on
    their first attempt."""
    receiver, _ = receiver_with_endpoint(settings, rateLimitPerSecond=1)
    running = fleet(settings, [Channel.WEBHOOK])
    pipeline = running.pipelines[Channel.WEBHOOK].get()
    assert isinstance(pipeline, WebhookPipeline)
    limiter = RecordingLimiter(pipeline.limiter)
    pipeline.limiter = limiter
    try:
        ids = [emit(settings, "order.created", {"n": n})[0] for n in range(3)]

        receiver.wait_for(3, timeout=15)
        service = NotificationService(settings)
        assert [final_status(service, i)["attempts"] for i in ids] == [1, 1, 1]
        granted = [(before, after) for before, after, allowed in limiter.answers if allowed]
        assert len(granted) == 3
        # Windows of one second follow each other, so the first and third grants lie in
        # windows at least a second apart (measured from outside the calls: a lower bound).
        last_after, first_before = max(a for _, a in granted), min(b for b, _ in granted)
        assert last_after - first_before > 1.0, f"grants too close together: {granted}"
        assert not all(allowed for *_, allowed in limiter.answers)
    finally:
        receiver.stop()


class RecordingLimiter(RateLimiter):
    """Delegates, and records whether each call was allowed with the time just before and
    just after it."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.answers: list[tuple[float, float, bool]] = []

    def hit(self, key: str, limit: int, window_ms: int) -> Decision:
        before = time.monotonic()
        decision = self.inner.hit(key, limit, window_ms)
        self.answers.append((before, time.monotonic(), decision.allowed))
        return decision

    def reserve(self, key: str, name: str, limit: int, window_ms: int) -> Decision:
        return self.inner.reserve(key, name, limit, window_ms)

    def release(self, key: str, name: str) -> None:
        self.inner.release(key, name)


def test_an_ordered_endpoint_delivers_each_key_in_order_one_at_a_time(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an ordered endpoint and a first message of key A that keeps failing, then the
    later messages of key A wait (without using attempts) while key B goes ahead; once the
    first succeeds, key A arrives in order."""
    receiver, _ = receiver_with_endpoint(settings, ordered=True, retryScheduleMs=[200] * 20)
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
