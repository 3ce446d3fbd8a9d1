"""The outbox: email and SMS written to files when no SMTP relay or Twilio account is set."""

from __future__ import annotations

import json
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from shared.channels import Channel
from shared.config import Settings
from shared.errors import PermanentDeliveryError
from shared.payloads import EmailPayload, SmsPayload
from tests.workers.providers.messages import outgoing
from workers.providers.base import Outgoing
from workers.providers.mime import build_email, to_bytes
from workers.providers.outbox import OutboxEmailProvider, OutboxSmsProvider

pytestmark = pytest.mark.anyio


SENDER = "KAI Tests <noreply@kai.test>"


def claimed(channel: Channel, payload: dict[str, Any], message_id: str | None = None) -> Outgoing[Any]:
    if channel is Channel.SMS:
        return outgoing(SmsPayload(**{"message": "", **payload}), message_id)
    return outgoing(EmailPayload(**payload), message_id)


def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {"KAI_VAR_DIR": str(tmp_path / "var"), "EMAIL_FROM": SENDER, "TWILIO_PHONE_NUMBER": "+15005550006"}
    )


def parse(raw: bytes) -> EmailMessage:
    # policy.default makes the parser build EmailMessage objects (get_content and friends).
    return message_from_bytes(raw, policy=policy.default)


def leaves(message: EmailMessage) -> list[tuple[str, str]]:
    return [
        (part.get_content_type(), part.get_content()) for part in message.walk() if not part.is_multipart()
    ]


def email_payload(**fields: Any) -> dict[str, Any]:
    return {
        "to": "ada@example.com",
        "subject": "Welcome",
        "text": "Hello Ada",
        "html": "<p>Hello Ada</p>",
        **fields,
    }


async def test_an_email_becomes_an_eml_file(tmp_path: Path) -> None:
    """Given no SMTP relay, when an email is sent, then ``<id>.eml`` appears in the outbox
    (created on demand) holding the full multipart message with our headers."""
    config = settings(tmp_path)
    message = claimed(Channel.EMAIL, email_payload())

    result = await OutboxEmailProvider(config).send(message)

    path = config.outbox_dir / f"{message.id}.eml"
    assert result.provider_message_id == path.name
    assert result.delivered is False
    parsed = parse(path.read_bytes())
    assert parsed["From"] == SENDER
    assert parsed["To"] == "ada@example.com"
    assert parsed["Subject"] == "Welcome"
    assert parsed["X-KAI-Message-Id"] == message.id
    assert parsed.get_content_type() == "multipart/alternative"
    bodies = [part.get_content().strip() for part in parsed.walk() if not part.is_multipart()]
    assert bodies == ["Hello Ada", "<p>Hello Ada</p>"]
    assert b"\r\n" in path.read_bytes()  # RFC 5322 line ends


async def test_the_file_is_the_message_smtp_would_send(tmp_path: Path) -> None:
    """Given the same message, then the outbox file and the SMTP provider's MIME builder agree
    on every header but Date and on the bodies (one builder, not two)."""
    config = settings(tmp_path)
    message = claimed(Channel.EMAIL, email_payload())

    await OutboxEmailProvider(config).send(message)

    written = parse((config.outbox_dir / f"{message.id}.eml").read_bytes())
    built = parse(to_bytes(build_email(message, SENDER)))
    for header in ("From", "To", "Subject", "Message-ID", "X-KAI-Message-Id"):
        assert written[header] == built[header], header
    assert written.get_content_type() == built.get_content_type()
    assert leaves(written) == leaves(built)


async def test_a_retry_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    """Given a message written once, when it is written again (a retry), then its file is
    replaced and the outbox holds exactly that one file."""
    config = settings(tmp_path)
    provider = OutboxEmailProvider(config)
    message_id = str(uuid.uuid4())

    await provider.send(claimed(Channel.EMAIL, email_payload(subject="First"), message_id))
    await provider.send(claimed(Channel.EMAIL, email_payload(subject="Second"), message_id))

    assert [p.name for p in config.outbox_dir.iterdir()] == [f"{message_id}.eml"]
    parsed = parse((config.outbox_dir / f"{message_id}.eml").read_bytes())
    assert parsed["Subject"] == "Second"


@pytest.mark.parametrize("message_id", ["../../escape", "/etc/passwd", "a/b\\c", "..", "."])
async def test_a_message_id_cannot_name_a_path_outside_the_outbox(tmp_path: Path, message_id: str) -> None:
    """Given a hostile message id, when written, then the file still lands inside the outbox."""
    config = settings(tmp_path)

    result = await OutboxEmailProvider(config).send(claimed(Channel.EMAIL, email_payload(), message_id))

    files = list(config.outbox_dir.iterdir())
    assert [f.name for f in files] == [result.provider_message_id]
    assert files[0].resolve().parent == config.outbox_dir.resolve()


async def test_a_non_ascii_address_is_written_as_smtputf8(tmp_path: Path) -> None:
    """Given an internationalized recipient, when written, then the address is kept as UTF-8
    (encoded-words are not valid inside addresses)."""
    config = settings(tmp_path)
    message = claimed(Channel.EMAIL, email_payload(to="jörg@bücher.example"))

    await OutboxEmailProvider(config).send(message)

    raw = (config.outbox_dir / f"{message.id}.eml").read_bytes()
    assert "To: jörg@bücher.example".encode() in raw


async def test_an_email_without_a_body_fails_permanently(tmp_path: Path) -> None:
    """Given a payload with neither text nor html, when written, then it fails permanently."""
    config = settings(tmp_path)

    with pytest.raises(PermanentDeliveryError) as caught:
        await OutboxEmailProvider(config).send(claimed(Channel.EMAIL, email_payload(text=None, html=None)))

    assert caught.value.code == "email_invalid"


async def test_an_sms_becomes_a_json_file(tmp_path: Path) -> None:
    """Given no Twilio account, when an SMS is sent, then ``<id>.sms.json`` holds to, from and
    body."""
    config = settings(tmp_path)
    message = claimed(Channel.SMS, {"to": "+14155550100", "message": "Code: 123456 ✓"})

    result = await OutboxSmsProvider(config).send(message)

    path = config.outbox_dir / f"{message.id}.sms.json"
    assert result.provider_message_id == path.name
    record = json.loads(path.read_text(encoding="utf-8"))
    assert (record["id"], record["to"], record["from"], record["body"]) == (
        message.id,
        "+14155550100",
        "+15005550006",
        "Code: 123456 ✓",
    )


async def test_an_sms_without_a_message_fails_permanently(tmp_path: Path) -> None:
    """Given an SMS payload with no message, when written, then it fails permanently."""
    with pytest.raises(PermanentDeliveryError):
        await OutboxSmsProvider(settings(tmp_path)).send(claimed(Channel.SMS, {"to": "+14155550100"}))
