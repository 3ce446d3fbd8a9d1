"""Every channel, end to end through the real RabbitMQ and PostgreSQL to a real protocol peer:
success, a temporary failure that later succeeds, a permanent failure, retries exhausted
(dead-letter queue + failed), and a duplicate broker delivery that must not send twice.

One table drives all channels (the way Apprise tests its providers); each row says how to
send on the channel, how to make its peer fail, and how to count what the peer received.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text

from producer.service import NotificationService
from shared.broker import publish
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import Notification, WebhookDeliveryLog
from shared.db.session import get_engine, session_scope
from tests.conftest import WEBHOOK_SECRET, Fleet, Queues, final_status
from tests.sinks.apps import PUSH_USER, AppPeers
from tests.sinks.slack_peer import DEFAULT_CHANNEL as SLACK_CHANNEL
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.twilio_sink import TwilioSink
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until

TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "twilio-test-token"


@dataclass
class Peers:
    smtp: SmtpSink
    twilio: TwilioSink
    webhooks: WebhookReceiver
    database_url: str
    apps: AppPeers

    def inbox_count(self, user_id: str) -> int:
        with session_scope(self.database_url) as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(Notification).where(Notification.user_id == user_id)
                )
                or 0
            )

    def fail_inbox_inserts(self, times: int | None) -> None:
        """Make the database refuse the next ``times`` inbox inserts (None: all), with a
        trigger: the in-app channel's provider is the database itself."""
        # A sequence, not a counter row: nextval() is not undone when the insert is.
        limit = "2147483647" if times is None else str(times)
        with get_engine(self.database_url).begin() as conn:
            conn.execute(text("DROP SEQUENCE IF EXISTS test_inbox_fault_seq"))
            conn.execute(text("CREATE SEQUENCE test_inbox_fault_seq"))
            # The trigger runs as the application role, which owns nothing.
            conn.execute(text("GRANT USAGE ON SEQUENCE test_inbox_fault_seq TO PUBLIC"))
            conn.execute(
                text(
                    f"""
                    CREATE OR REPLACE FUNCTION test_inbox_fault() RETURNS trigger AS $$
                    BEGIN
                      IF nextval('test_inbox_fault_seq') <= {limit} THEN
                        RAISE EXCEPTION 'inbox unavailable (test)';
                      END IF;
                      RETURN NEW;
                    END $$ LANGUAGE plpgsql
                    """
                )
            )
            conn.execute(text("DROP TRIGGER IF EXISTS test_inbox_fault ON notifications"))
            conn.execute(
                text(
                    "CREATE TRIGGER test_inbox_fault BEFORE INSERT ON notifications "
                    "FOR EACH ROW EXECUTE FUNCTION test_inbox_fault()"
                )
            )

    def clear_inbox_faults(self) -> None:
        with get_engine(self.database_url).begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS test_inbox_fault ON notifications"))


@dataclass(frozen=True)
class Case:
    channel: Channel
    send: Callable[[NotificationService], str]
    received: Callable[[Peers], int]
    fail_temporarily: Callable[[Peers, int | None], None]
    fail_permanently: Callable[[Peers], None] | None
    success_status: str
    #: What the peer has seen after one temporary failure and a success (an HTTP receiver
    #: sees the failed request too; an SMTP or Twilio server refused it before accepting).
    received_after_one_failure: int
    temporary_code: str
    permanent_code: str | None
    #: Tells apart two cases of one channel (Slack and Teams).
    name: str | None = None

    def __str__(self) -> str:
        return self.name or self.channel.value


CASES = [
    Case(
        channel=Channel.EMAIL,
        send=lambda s: s.send_email(
            to="ada@example.com", subject="Welcome to KAI", text="Thanks for joining", html="<p>Thanks</p>"
        ),
        received=lambda p: len(p.smtp.received),
        fail_temporarily=lambda p, n: (
            p.smtp.fail_always(451, "try later") if n is None else p.smtp.fail_next(451, "try later", times=n)
        ),
        fail_permanently=lambda p: p.smtp.fail_always(550, "no such user"),
        success_status="sent",
        received_after_one_failure=1,
        temporary_code="smtp_451",
        permanent_code="smtp_550",
    ),
    Case(
        channel=Channel.SMS,
        send=lambda s: s.send_sms(to="+14155550100", message="Your code is 123456"),
        received=lambda p: len(p.twilio.requests),
        fail_temporarily=lambda p, n: (
            p.twilio.fail_always(500, 20500) if n is None else p.twilio.fail_next(500, 20500, times=n)
        ),
        fail_permanently=lambda p: p.twilio.fail_always(
            400, 21211, "The 'To' number is not a valid phone number."
        ),
        success_status="sent",
        received_after_one_failure=1,
        temporary_code="twilio_20500",
        permanent_code="twilio_21211",
    ),
    Case(
        channel=Channel.WEBHOOK,
        send=lambda s: s.send_webhook(url=PEERS_URL["webhook"], payload={"event": "order.created", "id": 7}),
        received=lambda p: len(p.webhooks.deliveries),
        fail_temporarily=lambda p, n: p.webhooks.respond_next(503, times=n),
        fail_permanently=lambda p: p.webhooks.respond_next(404, times=None),
        success_status="delivered",
        received_after_one_failure=2,
        temporary_code="http_503",
        permanent_code="http_404",
    ),
    Case(
        channel=Channel.PUSH,
        send=lambda s: s.send_push(user_id=PUSH_USER, title="Shipped", body="Order 7 left the warehouse"),
        received=lambda p: p.apps.pushes_received(),
        fail_temporarily=lambda p, n: p.apps.fail_pushes(503, n),
        fail_permanently=lambda p: p.apps.fail_pushes(400, None),
        success_status="sent",
        received_after_one_failure=1,
        temporary_code="webpush_503",
        permanent_code="webpush_400",
    ),
    Case(
        channel=Channel.CHAT,
        send=lambda s: s.send_chat(service="slack", to=SLACK_CHANNEL, text="Deploy 42 finished"),
        received=lambda p: len(p.apps.slack.posts),
        fail_temporarily=lambda p, n: p.apps.slack.fail_next("service_unavailable", 503, times=n),
        fail_permanently=lambda p: p.apps.slack.fail_next("channel_not_found", times=None),
        success_status="delivered",
        received_after_one_failure=1,
        temporary_code="slack_service_unavailable",
        permanent_code="slack_channel_not_found",
    ),
    Case(
        channel=Channel.CHAT,
        send=lambda s: s.send_chat(
            service="teams", webhook_url=PEERS_URL["teams"], text="Deploy 42 finished"
        ),
        received=lambda p: len(p.apps.teams.posts),
        fail_temporarily=lambda p, n: p.apps.teams.fail_next(503, "busy", times=n),
        fail_permanently=lambda p: p.apps.teams.fail_next(400, "Bad payload", times=None),
        success_status="sent",
        received_after_one_failure=1,
        temporary_code="teams_http_503",
        permanent_code="teams_http_400",
        name="chat-teams",
    ),
    Case(
        channel=Channel.IN_APP,
        send=lambda s: s.send_in_app_notification(user_id="user-7", title="Hello", message="World"),
        received=lambda p: p.inbox_count("user-7"),
        fail_temporarily=lambda p, n: p.fail_inbox_inserts(n),
        fail_permanently=None,  # an inbox insert has no permanent failure the caller could cause
        success_status="delivered",
        received_after_one_failure=1,
        temporary_code="internal_error",
        permanent_code=None,
    ),
]

#: The receiver's URL, known only once it runs (the webhook case reads it at send time).
PEERS_URL: dict[str, str] = {}


@pytest.fixture(scope="module")
def app_peers() -> Iterator[AppPeers]:
    with AppPeers.started() as peers:
        yield peers


@pytest.fixture
def peers(database_url: str, app_peers: AppPeers) -> Iterator[Peers]:
    app_peers.reset()
    with (
        SmtpSink() as smtp,
        TwilioSink(TWILIO_SID, TWILIO_TOKEN) as twilio,
        WebhookReceiver(WEBHOOK_SECRET) as webhooks,
    ):
        PEERS_URL["webhook"] = webhooks.url
        PEERS_URL["teams"] = app_peers.teams.new_webhook()
        p = Peers(smtp, twilio, webhooks, database_url, app_peers)
        yield p
        p.clear_inbox_faults()


@pytest.fixture
def channel_settings(make_settings: Callable[..., Settings], peers: Peers) -> Settings:
    return make_settings(
        EMAIL_HOST=peers.smtp.host,
        EMAIL_PORT=str(peers.smtp.port),
        TWILIO_ACCOUNT_SID=TWILIO_SID,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        TWILIO_PHONE_NUMBER="+15005550006",
        TWILIO_API_BASE=peers.twilio.base_url,
        **peers.apps.settings(),
    )


@pytest.fixture
def service(channel_settings: Settings, fleet: Callable[..., Fleet], peers: Peers) -> NotificationService:
    peers.apps.register_devices(peers.database_url)
    fleet(channel_settings)
    return NotificationService(channel_settings)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_success(case: Case, peers: Peers, service: NotificationService) -> None:
    """Given a healthy peer, a message is delivered in one attempt."""
    message_id = case.send(service)

    view = final_status(service, message_id)

    assert view["status"] == case.success_status, view
    assert view["attempts"] == 1
    assert view["lastError"] is None
    assert view["providerMessageId"]
    assert case.received(peers) == 1


@pytest.mark.parametrize("case", CASES, ids=str)
def test_temporary_failure_then_success(case: Case, peers: Peers, service: NotificationService) -> None:
    """Given a peer that fails temporarily once, the message is retried and delivered on the
    second attempt."""
    case.fail_temporarily(peers, 1)

    view = final_status(service, case.send(service))

    assert view["status"] == case.success_status, view
    assert view["attempts"] == 2
    assert case.received(peers) == case.received_after_one_failure


@pytest.mark.parametrize("case", [c for c in CASES if c.fail_permanently is not None], ids=str)
def test_permanent_failure_is_not_retried(
    case: Case, peers: Peers, service: NotificationService, queues: Queues
) -> None:
    """Given a peer that refuses the message for good, it fails after one attempt with the
    reason recorded, and is not dead-lettered (there is nothing to retry)."""
    assert case.fail_permanently is not None
    case.fail_permanently(peers)

    view = final_status(service, case.send(service))

    assert view["status"] == "failed", view
    assert view["attempts"] == 1
    assert view["errorCode"] == case.permanent_code
    assert view["lastError"]
    assert queues.depth(f"{case.channel.queue_name}.XQ") == 0


@pytest.mark.parametrize("case", CASES, ids=str)
def test_retries_exhausted_dead_letters_and_fails(
    case: Case, peers: Peers, service: NotificationService, queues: Queues
) -> None:
    """Given a peer that always fails temporarily, the message is tried 1 + MAX_RETRIES times,
    then marked failed and left in the dead-letter queue."""
    case.fail_temporarily(peers, None)

    view = final_status(service, case.send(service))

    assert view["status"] == "failed", view
    assert view["attempts"] == 3  # MAX_RETRIES=2 in the test settings
    assert view["errorCode"] == case.temporary_code
    assert "gave up after 3 attempts" in view["lastError"]
    wait_until(
        lambda: queues.depth(f"{case.channel.queue_name}.XQ") == 1, timeout=10, message="not dead-lettered"
    )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_duplicate_delivery_does_not_send_twice(
    case: Case, peers: Peers, service: NotificationService, channel_settings: Settings
) -> None:
    """Given a delivered message, when the broker delivers its id again (a redelivery after a
    lost ack), it is acknowledged without a second send."""
    message_id = case.send(service)
    final_status(service, message_id)
    from shared.broker import get_broker

    broker = get_broker(channel_settings)
    publish(broker, case.channel, message_id)
    broker.join(case.channel.queue_name, timeout=10_000)

    assert case.received(peers) == 1
    assert service.get_status(message_id)["attempts"] == 1


def test_webhook_attempts_are_logged_and_signed(peers: Peers, service: NotificationService) -> None:
    """Each webhook attempt leaves a webhook_delivery_logs row; the receiver verified the
    Standard Webhooks signature, and the webhook-id is the message id on every attempt."""
    peers.webhooks.respond_next(500, times=1, body=b"boom")
    message_id = service.send_webhook(url=peers.webhooks.url, payload={"hello": "world"})

    final_status(service, message_id)

    deliveries = peers.webhooks.deliveries
    assert [d.verified for d in deliveries] == [True, True]
    assert {d.headers["webhook-id"] for d in deliveries} == {message_id}
    assert deliveries[-1].json == {"hello": "world"}
    with session_scope(service.settings.database_url) as session:
        logs = session.scalars(
            select(WebhookDeliveryLog)
            .where(WebhookDeliveryLog.notification_log_id == message_id)
            .order_by(WebhookDeliveryLog.attempt)
        ).all()
        assert [(log.attempt, log.response_status, log.success) for log in logs] == [
            (1, 500, False),
            (2, 200, True),
        ]
        assert "whsec_" not in str(logs[0].request_headers)


def test_email_reaches_the_smtp_server_as_multipart(peers: Peers, service: NotificationService) -> None:
    message_id = service.send_email(
        to="ada@example.com", subject="Hello", text="plain body", html="<b>html</b>"
    )

    final_status(service, message_id)

    message = peers.smtp.messages[0]
    assert message["Subject"] == "Hello"
    assert message["To"] == "ada@example.com"
    assert message.get_content_type() == "multipart/alternative"
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode().strip()
        for part in message.walk()
        if not part.is_multipart()
    }
    assert parts == {"text/plain": "plain body", "text/html": "<b>html</b>"}


def test_sms_reaches_twilio_with_the_configured_sender(peers: Peers, service: NotificationService) -> None:
    view = final_status(service, service.send_sms(to="+14155550100", message="Code 1"))

    request = peers.twilio.requests[0]
    assert (request.to, request.from_, request.body) == ("+14155550100", "+15005550006", "Code 1")
    assert view["providerMessageId"] == request.sid
