"""The SMTP provider against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import concurrent.futures.thread
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import EmailPayload
from tests.sinks.drip_server import DripServer
from tests.sinks.smtp_sink import SmtpSink
from tests.waiting import await_until
from tests.workers.providers.messages import outgoing
from workers.providers.base import Outgoing
from workers.providers.smtp import SmtpProvider, classify, tls_mode

pytestmark = pytest.mark.anyio


SENDER = "KAI Tests <noreply@kai.test>"


def email(
    to: str = "ada@example.com", *, message_id: str | None = None, **fields: Any
) -> Outgoing[EmailPayload]:
    payload = {"to": to, "subject": "Your receipt", "text": "Thanks!", "html": None, **fields}
    return outgoing(EmailPayload(**payload), message_id)


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
async def make_provider(tmp_path: Path) -> AsyncIterator[Callable[..., SmtpProvider]]:
    made: list[SmtpProvider] = []

    def make(port: int, **env: str) -> SmtpProvider:
        settings = Settings.from_env(
            {
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(port),
                "EMAIL_FROM": SENDER,
                "EMAIL_TIMEOUT": "2000",
                "EMAIL_POOL_SIZE": "2",
                "KAI_VAR_DIR": str(tmp_path),
                **env,
            }
        )
        provider = SmtpProvider(settings)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(sink: SmtpSink, make_provider: Callable[..., SmtpProvider]) -> SmtpProvider:
    return make_provider(sink.port)


# -- what arrives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "html", "content_type", "parts"),
    [
        (
            "Thanks for your order.",
            "<p>Thanks for your <b>order</b>.</p>",
            "multipart/alternative",
            ["text/plain", "text/html"],
        ),
        ("Thanks for your order.", None, "text/plain", ["text/plain"]),
        (None, "<p>Thanks!</p>", "text/html", ["text/html"]),
    ],
)
async def test_mail_arrives_with_the_parts_it_was_given(
    sink: SmtpSink,
    provider: SmtpProvider,
    text: str | None,
    html: str | None,
    content_type: str,
    parts: list[str],
) -> None:
    """Given a text and/or html body, when the email is sent, then the server receives one
    message of the matching MIME shape whose parts hold exactly those bodies."""
    message = email(text=text, html=html)

    await provider.send(message)

    (received,) = sink.wait_for(1)
    assert received.get_content_type() == content_type
    leaves = [part for part in received.walk() if not part.is_multipart()]
    assert [part.get_content_type() for part in leaves] == parts
    bodies = {part.get_content_type(): part.get_content().strip() for part in leaves}
    if text:
        assert bodies["text/plain"] == text
    if html:
        assert bodies["text/html"] == html


async def test_headers_identify_sender_recipient_and_message(sink: SmtpSink, provider: SmtpProvider) -> None:
    """Given an email with a non-ASCII subject, when it is sent, then From, To, Subject, Date,
    Message-ID and X-KAI-Message-Id arrive, and the result names the Message-ID."""
    message = email("grace@example.com", subject="Ihre Bestellung: Quittung für Jürgen ✓")

    result = await provider.send(message)

    (received,) = sink.wait_for(1)
    assert received["From"] == SENDER
    assert received["To"] == "grace@example.com"
    assert received["Subject"] == "Ihre Bestellung: Quittung für Jürgen ✓"
    assert received["Date"]
    assert received["X-KAI-Message-Id"] == message.id
    assert received["Message-ID"] == result.provider_message_id
    assert str(result.provider_message_id).endswith("@kai.test>")
    assert result.delivered is False
    (envelope,) = sink.received
    assert envelope.mail_from == "noreply@kai.test"
    assert envelope.rcpt_tos == ["grace@example.com"]


async def test_a_retried_message_keeps_its_message_id(sink: SmtpSink, provider: SmtpProvider) -> None:
    """Given the same message sent twice (a retry), when both arrive, then they carry the same
    Message-ID, so mailbox providers can show it once."""
    message = email()

    first = await provider.send(message)
    second = await provider.send(message)

    assert first.provider_message_id == second.provider_message_id
    assert [m["Message-ID"] for m in sink.wait_for(2)] == [first.provider_message_id] * 2


async def test_mail_still_goes_out_while_the_interpreter_shuts_down(
    sink: SmtpSink, provider: SmtpProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a worker finishing its last messages after SIGTERM (the interpreter shutting
    down, so thread pools take no new work), when it sends an email on a fresh connection,
    then the email is delivered: connecting needs no thread pool."""
    monkeypatch.setattr(concurrent.futures.thread, "_shutdown", True)

    await provider.send(email())

    assert len(sink.wait_for(1)) == 1


# -- connection reuse -------------------------------------------------------------------------


async def test_sequential_sends_reuse_one_connection(sink: SmtpSink, provider: SmtpProvider) -> None:
    """Given a pool of two, when ten emails are sent one after another, then they all travel
    over a single SMTP connection."""
    for _ in range(10):
        await provider.send(email())

    sink.wait_for(10)
    assert sink.connections == 1
    assert provider.connections_opened == 1


async def test_concurrent_sends_share_at_most_pool_size_connections(
    sink: SmtpSink, provider: SmtpProvider
) -> None:
    """Given a pool of two and forty emails in flight at once, then all forty arrive over at
    most two SMTP connections."""
    await asyncio.gather(*(provider.send(email()) for _ in range(40)))

    assert len(sink.wait_for(40)) == 40
    assert 1 <= sink.connections <= 2


async def test_a_connection_dropped_while_pooled_is_replaced(sink: SmtpSink, provider: SmtpProvider) -> None:
    """Given a pooled connection the server hangs up on at the next MAIL, when the next email
    is sent, then the provider reconnects once and the email is delivered."""
    await provider.send(email())
    sink.drop_next(stage="mail")

    await provider.send(email())

    assert len(sink.wait_for(2)) == 2
    assert sink.connections == 2


async def test_a_refusal_keeps_the_connection(sink: SmtpSink, provider: SmtpProvider) -> None:
    """Given a server that refuses two recipients with 451, when three emails are sent, then
    two fail temporarily, the third arrives and all used one connection."""
    sink.fail_next(451, "try later", times=2)

    outcomes = []
    for _ in range(3):
        try:
            await provider.send(email())
            outcomes.append("sent")
        except TemporaryDeliveryError as exc:
            outcomes.append(exc.code)

    assert outcomes == ["smtp_451", "smtp_451", "sent"]
    assert sink.connections == 1


# -- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "stage", "kind", "error_code"),
    [
        (451, "rcpt", TemporaryDeliveryError, "smtp_451"),
        (452, "rcpt", TemporaryDeliveryError, "smtp_452"),
        (451, "data", TemporaryDeliveryError, "smtp_451"),
        (421, "mail", TemporaryDeliveryError, "smtp_421"),
        (550, "rcpt", PermanentDeliveryError, "smtp_550"),
        (553, "mail", PermanentDeliveryError, "smtp_553"),
        (554, "data", PermanentDeliveryError, "smtp_554"),
        (552, "data", PermanentDeliveryError, "smtp_552"),
    ],
)
async def test_smtp_replies_are_classified_by_their_class(
    sink: SmtpSink,
    provider: SmtpProvider,
    code: int,
    stage: Any,
    kind: type[Exception],
    error_code: str,
) -> None:
    """Given a server that answers ``code`` at ``stage``, when an email is sent, then a 4xx
    is a temporary and a 5xx a permanent failure, with the reply code in the error code."""
    sink.fail_always(code, "refused by test", stage=stage)

    with pytest.raises(kind) as caught:
        await provider.send(email())

    assert caught.value.code == error_code  # type: ignore[attr-defined]
    assert str(code) in str(caught.value)
    assert caught.value.__cause__ is not None
    assert sink.received == []


async def test_a_hang_up_on_a_fresh_connection_is_temporary(sink: SmtpSink, provider: SmtpProvider) -> None:
    """Given a server that drops the very first connection at MAIL, when an email is sent,
    then it fails temporarily (no reconnect: the connection was not a stale pooled one)."""
    sink.drop_next(stage="mail")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(email())

    assert caught.value.code == "smtp_connection"


async def test_connection_refused_is_temporary(make_provider: Callable[..., SmtpProvider]) -> None:
    """Given nothing listening on the port, when an email is sent, then it fails temporarily."""
    provider = make_provider(closed_port())

    with pytest.raises(TemporaryDeliveryError) as caught:
        await provider.send(email())

    assert caught.value.code == "smtp_connection"


async def test_a_server_that_never_greets_times_out(make_provider: Callable[..., SmtpProvider]) -> None:
    """Given a port that accepts TCP but never says 220, when an email is sent with a 300 ms
    timeout, then it fails temporarily as a timeout, well before the worker's own limits."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        provider = make_provider(silent.getsockname()[1], EMAIL_TIMEOUT="300")

        with pytest.raises(TemporaryDeliveryError) as caught:
            await provider.send(email())

    assert caught.value.code == "smtp_timeout"


async def test_a_server_dripping_its_greeting_is_cut_off_at_the_deadline(
    make_provider: Callable[..., SmtpProvider],
) -> None:
    """Given a server that writes a long 220 greeting one byte at a time (no read waits
    long, the whole greeting takes seconds), when an email is sent with a 300 ms timeout,
    then it fails as a timeout and the connection is dropped before the greeting is done:
    the attempt has one deadline, not one per read."""
    greeting = b"220-" + b"g" * 100 + b"\r\n220 ready\r\n"
    with DripServer(greeting, interval=0.05, read_first=False) as peer:
        provider = make_provider(peer.port, EMAIL_TIMEOUT="300")

        with pytest.raises(TemporaryDeliveryError) as caught:
            await provider.send(email())

        assert caught.value.code == "smtp_timeout"
        await await_until(lambda: peer.connections[0].abandoned, message="the connection was kept open")


async def test_an_invalid_payload_fails_permanently_without_connecting(
    sink: SmtpSink, provider: SmtpProvider
) -> None:
    """Given a subject with a line break (header injection), when sent, then it fails
    permanently and no connection is opened."""
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(email(subject="Hi\r\nBcc: everyone@example.com"))

    assert caught.value.code == "email_invalid"
    assert sink.connections == 0


# -- authentication and TLS --------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
async def test_it_logs_in_when_a_user_is_configured(make_provider: Callable[..., SmtpProvider]) -> None:
    """Given a relay that requires credentials, when EMAIL_USER/EMAIL_PASSWORD are set, then
    the provider logs in and the mail is accepted."""
    with SmtpSink(credentials=("mailer", "s3cret")) as sink:
        provider = make_provider(sink.port, EMAIL_USER="mailer", EMAIL_PASSWORD="s3cret")

        await provider.send(email())

        sink.wait_for(1)
        assert sink.received[0].login == "mailer"


@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
async def test_wrong_credentials_are_temporary(make_provider: Callable[..., SmtpProvider]) -> None:
    """Given wrong credentials, when an email is sent, then it fails temporarily: the message
    is fine and should wait for the configuration to be fixed."""
    with SmtpSink(credentials=("mailer", "s3cret")) as sink:
        provider = make_provider(sink.port, EMAIL_USER="mailer", EMAIL_PASSWORD="wrong")

        with pytest.raises(TemporaryDeliveryError) as caught:
            await provider.send(email())

    assert caught.value.code == "smtp_auth_535"


@pytest.mark.parametrize(
    ("host", "secure", "expected"),
    [
        ("smtp.example.com", "true", (True, False)),
        ("127.0.0.1", "true", (True, False)),
        ("smtp.example.com", "false", (False, True)),
        ("10.1.2.3", "false", (False, True)),
        ("127.0.0.1", "false", (False, False)),
        ("127.0.0.53", "false", (False, False)),
        ("localhost", "false", (False, False)),
        ("::1", "false", (False, False)),
    ],
)
async def test_tls_is_required_except_for_a_loopback_relay(
    host: str, secure: str, expected: tuple[bool, bool]
) -> None:
    """Given EMAIL_HOST and EMAIL_SECURE, then the TLS mode is implicit TLS when secure,
    plain only on loopback, and mandatory STARTTLS everywhere else (never opportunistic)."""
    settings = Settings.from_env({"EMAIL_HOST": host, "EMAIL_SECURE": secure})

    assert tls_mode(settings.smtp_relays[0]) == expected


async def test_close_quits_and_a_later_send_starts_again(sink: SmtpSink, provider: SmtpProvider) -> None:
    """Given a provider that has sent, when it is closed, then its connection is gone; a
    send after that works on a fresh connection."""
    await provider.send(email())

    await provider.close()

    assert provider.connections_opened == 1
    await provider.send(email())
    assert len(sink.wait_for(2)) == 2
    assert sink.connections == 2


@pytest.mark.parametrize(
    ("error", "kind", "error_code"),
    [
        (
            aiosmtplib.SMTPRecipientsRefused(
                [
                    aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@example.com"),
                    aiosmtplib.SMTPRecipientRefused(553, "bad mailbox", "b@example.com"),
                ]
            ),
            PermanentDeliveryError,
            "smtp_550",
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [
                    aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@example.com"),
                    aiosmtplib.SMTPRecipientRefused(452, "mailbox full", "b@example.com"),
                ]
            ),
            TemporaryDeliveryError,
            "smtp_452",
        ),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), TemporaryDeliveryError, "smtp_auth_535"),
        (aiosmtplib.SMTPConnectTimeoutError("connect timed out"), TemporaryDeliveryError, "smtp_timeout"),
        (aiosmtplib.SMTPReadTimeoutError("read timed out"), TemporaryDeliveryError, "smtp_timeout"),
        (aiosmtplib.SMTPServerDisconnected("gone"), TemporaryDeliveryError, "smtp_connection"),
        (aiosmtplib.SMTPConnectError("refused"), TemporaryDeliveryError, "smtp_connection"),
        (
            aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported"),
            PermanentDeliveryError,
            "smtp_not_supported",
        ),
        (aiosmtplib.SMTPException("STARTTLS extension not supported"), TemporaryDeliveryError, "smtp_error"),
        (ValueError("invalid address"), PermanentDeliveryError, "smtp_invalid_address"),
    ],
)
async def test_classify_maps_aiosmtplib_errors(
    error: BaseException, kind: type[DeliveryError], error_code: str
) -> None:
    """Given an aiosmtplib failure, then it maps to the delivery error the pipeline acts on:
    all-permanent recipient refusals are permanent, any temporary one makes the whole
    temporary; transport problems and configuration problems are temporary."""
    mapped = classify(error)

    assert type(mapped) is kind
    assert mapped.code == error_code


async def test_a_provider_without_email_host_is_a_configuration_error() -> None:
    """Given no EMAIL_HOST, when the SMTP provider is built, then ConfigError (the outbox is
    the provider for that case)."""
    with pytest.raises(ConfigError):
        SmtpProvider(Settings.from_env({}))
