"""Per-recipient limits in the delivery pipeline, through the real worker pools, RabbitMQ,
PostgreSQL and Redis to the Twilio-compatible and SMTP sinks: the recipient gets its hourly
budget and no more, the rest end ``skipped`` with the reason, other recipients are
unaffected, a retried message counts once, and a Redis outage lets messages through."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY

from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.payloads import SmsPayload
from shared.ratelimit import MemoryRateLimiter
from shared.ratelimit_settings import DEFAULT_SMS_RECIPIENT_PER_HOUR, RateLimitSettings
from tests.conftest import Fleet, final_status
from tests.gateway.server import free_port
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.twilio_sink import TwilioSink
from workers.delivery.attempt import Delivery
from workers.delivery.recipient_limits import SKIP_CODE, RecipientLimits, recipient_key

TWILIO_SID = "AC" + "2" * 32
TWILIO_TOKEN = "twilio-test-token"
ALICE, BOB = "+14155550100", "+14155550101"


@pytest.fixture
def twilio() -> Iterator[TwilioSink]:
    with TwilioSink(TWILIO_SID, TWILIO_TOKEN) as sink:
        yield sink


@pytest.fixture
def sms_settings(make_settings: Callable[..., Settings], twilio: TwilioSink) -> Callable[..., Settings]:
    def make(**overrides: str) -> Settings:
        return make_settings(
            TWILIO_ACCOUNT_SID=TWILIO_SID,
            TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
            TWILIO_PHONE_NUMBER="+15005550006",
            TWILIO_API_BASE=twilio.base_url,
            **overrides,
        )

    return make


def skipped_count(channel: str) -> float:
    return REGISTRY.get_sample_value("kai_recipient_rate_limited_total", {"channel": channel}) or 0.0


@pytest.mark.parametrize("redis", ["redis", "in-process"])
def test_one_number_gets_its_hourly_sms_and_the_rest_are_skipped(
    redis: str,
    sms_settings: Callable[..., Settings],
    fleet: Callable[..., Fleet],
    twilio: TwilioSink,
) -> None:
    """Given the default limit of 10 SMS per number and hour, when 12 SMS to one number and
    one to another go through the SMS pool (4 threads at once), then 10 reach the number,
    2 end skipped with recipient_rate_limited, and the other number gets its SMS."""
    settings = sms_settings(**({"REDIS_URL": ""} if redis == "in-process" else {}))
    limit = DEFAULT_SMS_RECIPIENT_PER_HOUR
    before = skipped_count("sms")
    fleet(settings, [Channel.SMS], threads=4)
    service = NotificationService(settings)

    to_alice = [service.send_sms(to=ALICE, message=f"code {n}") for n in range(limit + 2)]
    to_bob = service.send_sms(to=BOB, message="code for bob")

    views = [final_status(service, m) for m in to_alice]
    outcomes = Counter(v["status"] for v in views)
    assert outcomes == {"sent": limit, "skipped": 2}, outcomes
    for view in (v for v in views if v["status"] == "skipped"):
        assert view["errorCode"] == SKIP_CODE
        assert "10 sms messages in the last hour" in view["lastError"]
    assert final_status(service, to_bob)["status"] == "sent"
    received = Counter(r.to for r in twilio.requests)
    assert received == {ALICE: limit, BOB: 1}
    assert skipped_count("sms") - before == 2


def test_a_retried_sms_counts_once_and_a_failed_attempt_not_at_all(
    sms_settings: Callable[..., Settings], fleet: Callable[..., Fleet], twilio: TwilioSink
) -> None:
    """Given a limit of 2 and a first SMS that fails once before it is sent, a second SMS
    still fits (the failed attempt gave its place back, the retry took one) and only a third
    is skipped."""
    settings = sms_settings(SMS_RECIPIENT_LIMIT_PER_HOUR="2")
    fleet(settings, [Channel.SMS])
    service = NotificationService(settings)
    twilio.fail_next(500, 20500, times=1)

    first = final_status(service, service.send_sms(to=ALICE, message="one"))
    second = final_status(service, service.send_sms(to=ALICE, message="two"))
    third = final_status(service, service.send_sms(to=ALICE, message="three"))

    assert (first["status"], first["attempts"]) == ("sent", 2)
    assert second["status"] == "sent"
    assert (third["status"], third["errorCode"]) == ("skipped", SKIP_CODE)
    assert len(twilio.requests) == 2


def test_an_unreachable_redis_lets_sms_through(
    sms_settings: Callable[..., Settings], fleet: Callable[..., Fleet], twilio: TwilioSink
) -> None:
    """Given REDIS_URL on a closed port and a limit of 1, both SMS to one number are sent
    (unchecked, counted in kai_rate_limit_unavailable_total) rather than held up."""
    settings = sms_settings(SMS_RECIPIENT_LIMIT_PER_HOUR="1", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    fleet(settings, [Channel.SMS])
    service = NotificationService(settings)

    views = [final_status(service, service.send_sms(to=ALICE, message=f"m{n}")) for n in range(2)]

    assert [v["status"] for v in views] == ["sent", "sent"]
    assert len(twilio.requests) == 2
    assert (
        REGISTRY.get_sample_value("kai_rate_limit_unavailable_total", {"component": "recipient_sms"}) or 0
    ) >= 1


def test_one_address_gets_its_hourly_email_however_it_is_spelled(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given a limit of 2 emails per address and hour, when four go to ann@example.com (one
    spelled Ann@Example.com) and one to bob@example.com, then ann gets two, two are skipped,
    and bob gets his."""
    with SmtpSink() as smtp:
        settings = make_settings(
            EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port), EMAIL_RECIPIENT_LIMIT_PER_HOUR="2"
        )
        fleet(settings, [Channel.EMAIL])
        service = NotificationService(settings)

        to_ann = [
            service.send_email(to=address, subject="Hello", text="Hi")
            for address in ("ann@example.com", "Ann@Example.com", "ann@example.com", "ann@example.com")
        ]
        to_bob = service.send_email(to="bob@example.com", subject="Hello", text="Hi")

        outcomes = Counter(final_status(service, m)["status"] for m in to_ann)
        assert outcomes == {"sent": 2, "skipped": 2}, outcomes
        assert final_status(service, to_bob)["status"] == "sent"
        delivered = Counter(rcpt.lower() for r in smtp.received for rcpt in r.rcpt_tos)
        assert delivered == {"ann@example.com": 2, "bob@example.com": 1}


def claim(message_id: str, recipient: str, *, critical: bool = False) -> Delivery:
    return Delivery(
        id=message_id,
        channel=Channel.SMS,
        recipient=recipient,
        attempt=1,
        max_attempts=3,
        user_id="u1",
        event_type="security.alert",
        payload=SmsPayload(to=recipient, message="x"),
        critical=critical,
    )


def test_critical_messages_are_neither_limited_nor_counted() -> None:
    """A critical rule's message goes out over the limit, and does not use up the budget of
    the ordinary messages after it."""
    limits = RecipientLimits(RateLimitSettings(sms_recipient_per_hour=1), Channel.SMS, MemoryRateLimiter())

    assert limits.reserve(claim("c1", ALICE, critical=True)) is None
    decision = limits.reserve(claim("m1", ALICE))
    assert decision is not None and decision.allowed
    assert limits.reserve(claim("c2", ALICE, critical=True)) is None
    refused = limits.reserve(claim("m2", ALICE))
    assert refused is not None and not refused.allowed


def test_recipients_are_keyed_by_a_hash_not_the_number() -> None:
    key = recipient_key(Channel.SMS, ALICE)
    assert ALICE.lstrip("+") not in key and key.startswith("recipient:sms:")
    assert recipient_key(Channel.EMAIL, "Ann@Example.com") == recipient_key(Channel.EMAIL, "ann@example.com")
