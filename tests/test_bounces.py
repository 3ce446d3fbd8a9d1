"""Bounces and complaints, end to end: an email goes through the real RabbitMQ and the email
actor to the SMTP sink; a delivery status notification (RFC 3464) or an ARF complaint
(RFC 5965) about it, built with the standard library's ``email`` package around the headers
the sink received, is posted to the real gateway. Hard bounces fail the email and suppress
the address, which the email workers then skip until an operator lifts it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import httpx
import pytest

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import SERVER_KEY, Fleet, final_status
from tests.gateway.server import LiveServer
from tests.sinks.smtp_sink import SmtpSink

RFC822 = {"Content-Type": "message/rfc822"}


@dataclass
class World:
    service: NotificationService
    smtp: SmtpSink
    api: httpx.Client

    def email(self, to: str = "ann@example.com") -> tuple[str, bytes]:
        """Send an email; its id and the headers the mail server received."""
        before = len(self.smtp.received)
        message_id = self.service.send_email(to=to, subject="Your invoice", text="Attached.", user_id="ann")
        assert final_status(self.service, message_id)["status"] in ("sent", "skipped")
        self.smtp.wait_for(before + 1)
        raw = self.smtp.received[before].raw
        return message_id, raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")

    def report(self, raw: bytes) -> httpx.Response:
        return self.api.post("/api/receipts/email", content=raw, headers=RFC822)


@pytest.fixture
def world(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], smtp: SmtpSink
) -> Iterator[World]:
    settings = make_settings(EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port))
    fleet(settings, [Channel.EMAIL])
    with (
        LiveServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {SERVER_KEY}"}) as api,
    ):
        yield World(NotificationService(settings), smtp, api)


def fields(**values: str) -> Message:
    block = Message()
    for name, value in values.items():
        block[name.replace("_", "-")] = value
    return block


def dsn(
    headers: bytes | None,
    *,
    action: str,
    status: str,
    recipient: str = "ann@example.com",
    to: str = "bounces@kai.example",
) -> bytes:
    """A delivery status notification as a receiving MTA writes it (without the original's
    headers when ``headers`` is None, as some servers send it), sent to ``to``."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.net"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.attach(MIMEText("This is the mail system at host mx.example.net.\n"))
    status_part = Message()
    status_part.set_type("message/delivery-status")
    status_part.set_payload(
        [
            fields(Reporting_MTA="dns; mx.example.net", Arrival_Date="Tue, 1 Dec 2026 12:00:00 +0000"),
            fields(
                Final_Recipient=f"rfc822; {recipient}",
                Original_Recipient=f"rfc822; {recipient}",
                Action=action,
                Status=status,
                Diagnostic_Code=f"smtp; 550 {status} <{recipient}>: Recipient address rejected",
            ),
        ]
    )
    report.attach(status_part)
    if headers is not None:
        report.attach(MIMEText(headers.decode(), "rfc822-headers"))
    return report.as_bytes()


def arf(headers: bytes) -> bytes:
    """A complaint (the recipient pressed "report spam") as a mailbox provider sends it."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "abuse@mailbox.example"
    report["Subject"] = "Complaint about message"
    report.attach(MIMEText("This is an email abuse report.\n"))
    feedback = fields(
        Feedback_Type="abuse",
        User_Agent="MailboxFeedback/1.0",
        Version="1",
        Original_Rcpt_To="ann@example.com",
    )
    report.attach(MIMEMessage(feedback, "feedback-report"))
    report.attach(MIMEText(headers.decode(), "rfc822-headers"))
    return report.as_bytes()


def suppressed(world: World) -> list[tuple[str, str]]:
    return [(s["address"], s["reason"]) for s in world.api.get("/api/suppressions").json()["items"]]


def test_a_hard_bounce_fails_the_email_and_suppresses_the_address_until_lifted(world: World) -> None:
    message_id, headers = world.email()

    answer = world.report(dsn(headers, action="failed", status="5.1.1"))

    assert answer.status_code == 200
    assert answer.json()["receipts"] == [
        {
            "messageId": message_id,
            "type": "bounced",
            "code": "hard 5.1.1",
            "recipient": "ann@example.com",
            "suppressed": True,
        }
    ]
    view = world.service.get_status(message_id)
    assert (view["status"], view["errorCode"]) == ("failed", "bounced_5.1.1")
    assert [(r["type"], r["code"], r["provider"]) for r in view["receipts"]] == [
        ("bounced", "hard 5.1.1", "email")
    ]
    assert suppressed(world) == [("ann@example.com", "hard_bounce")]

    later = world.service.send_email(to="Ann@Example.com", subject="Again", text="Hi", user_id="ann")
    skipped = final_status(world.service, later)
    assert (skipped["status"], skipped["errorCode"]) == ("skipped", "suppressed")
    assert "hard bounce" in skipped["lastError"]

    assert world.api.delete("/api/suppressions/ann@example.com").status_code == 204
    assert world.api.delete("/api/suppressions/ann@example.com").status_code == 404
    again = world.service.send_email(to="ann@example.com", subject="Again", text="Hi", user_id="ann")
    assert final_status(world.service, again)["status"] == "sent"


def test_a_soft_bounce_is_kept_and_changes_nothing_else(world: World) -> None:
    message_id, headers = world.email()

    answer = world.report(dsn(headers, action="delayed", status="4.2.2"))

    assert answer.status_code == 200
    assert [(r["code"], r["suppressed"]) for r in answer.json()["receipts"]] == [("soft 4.2.2", False)]
    assert world.service.get_status(message_id)["status"] == "sent"
    assert suppressed(world) == []


def test_a_complaint_suppresses_the_address_and_leaves_the_status(world: World) -> None:
    message_id, headers = world.email()

    answer = world.report(arf(headers))

    assert answer.status_code == 200
    assert [(r["type"], r["code"]) for r in answer.json()["receipts"]] == [("complained", "abuse")]
    view = world.service.get_status(message_id)
    assert view["status"] == "sent" and [r["type"] for r in view["receipts"]] == ["complained"]
    assert suppressed(world) == [("ann@example.com", "complaint")]


def test_the_same_report_twice_is_kept_once(world: World) -> None:
    message_id, headers = world.email()
    report = dsn(headers, action="failed", status="5.1.1")

    assert [world.report(report).status_code for _ in range(2)] == [200, 200]

    assert len(world.service.get_status(message_id)["receipts"]) == 1


def test_what_is_not_a_report_of_ours_is_refused_and_changes_nothing(world: World) -> None:
    message_id, headers = world.email()
    foreign = headers.replace(b"X-KAI-Message-Id: ", b"X-Other-Id: ").replace(
        b"Message-ID: <kai.", b"Message-ID: <x."
    )
    plain = MIMEText("Out of office until Monday.")
    plain["Subject"] = "Auto-reply"

    answers = {
        "an auto-reply": world.report(plain.as_bytes()),
        "a bounce of someone else's mail": world.report(dsn(foreign, action="failed", status="5.1.1")),
        "a report sent as JSON": world.api.post("/api/receipts/email", json={"report": "x"}),
    }

    assert {name: (a.status_code, a.json()["error"]["code"]) for name, a in answers.items()} == {
        "an auto-reply": (422, "not_a_report"),
        "a bounce of someone else's mail": (422, "not_a_report"),
        "a report sent as JSON": (415, "unsupported_media_type"),
    }
    assert world.service.get_status(message_id)["receipts"] == []
    assert suppressed(world) == []
