"""The return path, end to end: with EMAIL_BOUNCE_ADDRESS each email leaves with its own VERP
envelope sender; reports sent back to it are matched to the email even without the
original's headers, whether posted to ``POST /api/receipts/email`` or delivered over SMTP to
``kai-messaging bounces`` (driven here with the standard library's smtplib), against the
real database, broker and email worker."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from producer.bounce_listener import serve
from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.errors import ConfigError
from tests.conftest import SERVER_KEY, Fleet, final_status
from tests.gateway.server import LiveServer, free_port
from tests.readme import example_after
from tests.sinks.smtp_sink import SmtpSink
from tests.test_bounces import RFC822, arf, dsn
from tests.waiting import wait_until

BOUNCES = "bounces@kai.example"


def crlf(raw: bytes) -> bytes:
    """SMTP's line ends (smtplib sends bytes as they are)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Listener:
    """``kai-messaging bounces``' server on a loop of its own thread."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, args=(settings,), daemon=True)

    def _run(self, settings: Settings) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(serve(settings, "127.0.0.1", self.port, self._ready))
        with contextlib.suppress(asyncio.CancelledError):  # stopped by __exit__
            self._loop.run_until_complete(self._task)
        self._loop.close()

    def __enter__(self) -> Listener:
        self._thread.start()
        wait_until(self._ready.is_set, timeout=10, message="the bounce listener did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=10)

    def deliver(self, rcpt_to: str, raw: bytes) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            return client.sendmail("MAILER-DAEMON@mx.example.net", [rcpt_to], crlf(raw))

    def answer(self, rcpt_to: str, raw: bytes) -> tuple[int, bytes]:
        """The server's answer to DATA (a refusal there raises in ``sendmail``)."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo()
            client.mail("MAILER-DAEMON@mx.example.net")
            client.rcpt(rcpt_to)
            return client.data(crlf(raw))


@dataclass
class World:
    settings: Settings
    service: NotificationService
    smtp: SmtpSink

    def email(self, to: str = "ann@example.com") -> str:
        message_id = self.service.send_email(to=to, subject="Your invoice", text="Attached.", user_id="ann")
        assert final_status(self.service, message_id)["status"] == "sent"
        return message_id

    def return_path(self, message_id: str) -> str:
        return f"bounces+{message_id}@kai.example"


@pytest.fixture
def world(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], smtp: SmtpSink
) -> Iterator[World]:
    settings = make_settings(EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port), EMAIL_BOUNCE_ADDRESS=BOUNCES)
    fleet(settings, [Channel.EMAIL, Channel.WEBHOOK])
    yield World(settings, NotificationService(settings), smtp)


def test_each_email_leaves_with_its_own_return_path(world: World) -> None:
    message_id = world.email()
    [received] = world.smtp.received
    assert received.mail_from == world.return_path(message_id)
    assert received.message["From"] == "KAI Tests <noreply@kai.test>"


def test_a_posted_report_without_the_original_is_matched_by_its_return_path(world: World) -> None:
    """Given a DSN that returns none of the original's headers but is addressed to the
    email's return path, when it is posted, then the email is failed and its address
    suppressed, as with one that carries the headers."""
    message_id = world.email()
    report = dsn(None, action="failed", status="5.1.1", to=world.return_path(message_id))
    with (
        LiveServer(create_app(world.settings)) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {SERVER_KEY}"}) as api,
    ):
        answer = api.post("/api/receipts/email", content=report, headers=RFC822)
        assert answer.status_code == 200, answer.text
        assert answer.json()["receipts"][0]["messageId"] == message_id

        unmatched = api.post(
            "/api/receipts/email", content=dsn(None, action="failed", status="5.1.1"), headers=RFC822
        )
        assert unmatched.status_code == 422
        assert "EMAIL_BOUNCE_ADDRESS" in unmatched.json()["error"]["message"]

    view = world.service.get_status(message_id)
    assert (view["status"], view["errorCode"]) == ("failed", "bounced_5.1.1")


def test_the_listener_records_a_bounce_sent_to_a_return_path(world: World) -> None:
    """Given ``kai-messaging bounces`` listening, when a mail server delivers a hard bounce to
    an email's return path over SMTP (no original headers), then it answers 250 once the
    email is failed and the address suppressed; the next email to it is skipped."""
    message_id = world.email()
    with Listener(world.settings) as listener:
        code, text = listener.answer(
            world.return_path(message_id), dsn(None, action="failed", status="5.1.1", to="undisclosed")
        )

    assert (code, text) == (250, b"2.0.0 recorded")
    view = world.service.get_status(message_id)
    assert (view["status"], view["errorCode"]) == ("failed", "bounced_5.1.1")
    assert [r["code"] for r in view["receipts"]] == ["hard 5.1.1"]
    later = world.service.send_email(to="ann@example.com", subject="Again", text="Hello", user_id="ann")
    assert final_status(world.service, later)["status"] == "skipped"


def test_the_listener_reads_a_complaint_by_its_original_headers(world: World) -> None:
    message_id = world.email()
    headers = world.smtp.received[0].raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    with Listener(world.settings) as listener:
        refused = listener.deliver(BOUNCES, arf(headers))

    assert refused == {}
    assert [r["type"] for r in world.service.get_status(message_id)["receipts"]] == ["complained"]


def test_the_listener_is_no_open_relay_and_drops_what_is_not_a_report(world: World) -> None:
    """Given the listener, then a recipient outside the return path is refused with 550, and
    an auto-reply to the return path is accepted (refusing it would bounce it back) and
    changes nothing."""
    message_id = world.email()
    with Listener(world.settings) as listener:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            listener.deliver("ann@example.com", b"Subject: hi\n\nrelay me\n")
        auto_reply = b"From: ann@example.com\nSubject: Out of office\n\nBack on Monday.\n"
        code, text = listener.answer(world.return_path(message_id), auto_reply)

    assert refused.value.recipients["ann@example.com"][0] == 550
    assert code == 250 and b"not a report" in text
    view = world.service.get_status(message_id)
    assert (view["status"], view["receipts"]) == ("sent", [])


def test_the_listener_answers_451_while_the_database_is_away(world: World) -> None:
    """Given a database the listener cannot reach, then a report gets 451 (the sending
    server keeps it and tries again) instead of being accepted and lost."""
    away = replace(world.settings, database_url="postgresql+psycopg://kai@127.0.0.1:1/kai")
    report = dsn(None, action="failed", status="5.1.1")
    with Listener(away) as listener, pytest.raises(smtplib.SMTPDataError) as refused:
        listener.deliver(world.return_path("0b8e6f1e-2f7d-4c55-9d51-7a0f6e1c2b3a"), report)

    assert refused.value.smtp_code == 451


def test_the_listener_needs_a_bounce_address(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="EMAIL_BOUNCE_ADDRESS"):
        asyncio.run(serve(make_settings(), "127.0.0.1", free_port()))


@pytest.mark.parametrize("address", ["bounces", "bounces+x@kai.example", "@kai.example", "a b@kai.example"])
def test_a_bounce_address_that_cannot_carry_ids_is_refused(
    make_settings: Callable[..., Settings], address: str
) -> None:
    with pytest.raises(ConfigError, match="EMAIL_BOUNCE_ADDRESS"):
        make_settings(EMAIL_BOUNCE_ADDRESS=address)


def test_readme_listener_example(make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]) -> None:
    """The README's example, run as written against the listener: nothing refused, and the
    email it names is failed."""
    with SmtpSink() as smtp:
        settings = make_settings(
            EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port), EMAIL_BOUNCE_ADDRESS="bounces@notify.example.com"
        )
        fleet(settings, [Channel.EMAIL])
        world = World(settings, NotificationService(settings), smtp)
        message_id = world.email()
        with Listener(settings) as listener:
            namespace: dict[str, Any] = {
                "port": listener.port,
                "message_id": message_id,
                "report": crlf(dsn(None, action="failed", status="5.1.1")),
            }
            exec(example_after("What a remote mail server does with a bounce"), namespace)

    assert namespace["refused"] == {}
    assert world.service.get_status(message_id)["status"] == "failed"
