"""The embedded default for email, SMS, push and chat: write each message to a file instead of
sending it.

Used when ``EMAIL_HOST`` is unset (email) or the Twilio credentials are unset (SMS), so a
developer can run the whole service without accounts and open what would have been sent:
``var/outbox/<message id>.eml`` is the exact RFC 5322 message the SMTP provider would relay
(any mail client opens it), ``<message id>.sms.json`` holds the SMS,
``<message id>.<device id>.push.json`` a push as each device would get it (with no push
service configured) and ``<message id>.chat.json`` a Slack message for the bot (with no
SLACK_BOT_TOKEN). Files are written atomically, so a reader never sees half a message, and a
retry of the same message simply replaces its file.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from shared.config import Settings
from shared.errors import PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import ChatPayload, EmailPayload, PushPayload, PushTarget, SmsPayload
from workers.providers.base import Outgoing, SendResult
from workers.providers.mime import build_email, to_bytes

#: File name endings, so the two channels can share one directory.
EMAIL_SUFFIX = ".eml"
SMS_SUFFIX = ".sms.json"
PUSH_SUFFIX = ".push.json"
CHAT_SUFFIX = ".chat.json"

#: Characters allowed in a file name taken from a message id (ids are UUIDs; anything else is
#: replaced so an id can never name a path outside the outbox).
_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _file_name(message_id: str, suffix: str) -> str:
    stem = "".join(c if c in _SAFE_NAME_CHARS else "_" for c in message_id).lstrip(".")
    return (stem or "message") + suffix


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` via a temporary file and a rename."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _write(directory: Path, name: str, data: bytes) -> SendResult:
    try:
        path = write_atomically(directory, name, data)
    except OSError as exc:
        # A full or read-only disk may be fixed by an operator; keep the message for later.
        raise TemporaryDeliveryError(f"cannot write outbox file {name}: {exc}", code="outbox_io") from exc
    return SendResult(provider_message_id=path.name, delivered=False)


class OutboxEmailProvider:
    """Email to ``<outbox>/<message id>.eml``; thread-safe (one file per message)."""

    def __init__(self, settings: Settings) -> None:
        self._directory = settings.outbox_dir
        self._sender = settings.email_from

    async def send(self, message: Outgoing[EmailPayload]) -> SendResult:
        mime = build_email(message, self._sender)
        return await asyncio.to_thread(
            _write, self._directory, _file_name(message.id, EMAIL_SUFFIX), to_bytes(mime)
        )

    async def close(self) -> None:
        pass  # nothing held open between sends


class OutboxSmsProvider:
    """SMS to ``<outbox>/<message id>.sms.json``; thread-safe (one file per message)."""

    def __init__(self, settings: Settings) -> None:
        self._directory = settings.outbox_dir
        self._from = settings.twilio_phone_number

    async def send(self, message: Outgoing[SmsPayload]) -> SendResult:
        to, body = message.payload.to, message.payload.message
        if not to or not body:
            raise PermanentDeliveryError("SMS payload needs 'to' and 'message'", code="sms_invalid")
        record = {
            "id": message.id,
            "to": to,
            "from": self._from,
            "body": body,
            "written_at": datetime.now(UTC).isoformat(),
        }
        data = (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode()
        return await asyncio.to_thread(_write, self._directory, _file_name(message.id, SMS_SUFFIX), data)

    async def close(self) -> None:
        pass  # nothing held open between sends


def _json_file(record: Mapping[str, object]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode()


class OutboxPushSender:
    """A push to ``<outbox>/<message id>.<device id>.push.json`` per device."""

    def __init__(self, settings: Settings) -> None:
        self._directory = settings.outbox_dir

    async def send(self, message: Outgoing[PushPayload], target: PushTarget) -> SendResult:
        record = {
            "id": message.id,
            "device": {"id": target.id, "kind": target.kind, "appId": target.app_id},
            "notification": message.payload.to_json(),
            "written_at": datetime.now(UTC).isoformat(),
        }
        name = _file_name(f"{message.id}.{target.id}", PUSH_SUFFIX)
        result = await asyncio.to_thread(_write, self._directory, name, _json_file(record))
        return SendResult(provider_message_id=result.provider_message_id, provider="outbox")

    async def close(self) -> None:
        pass  # nothing held open between sends


class OutboxChatProvider:
    """A Slack message for the bot to ``<outbox>/<message id>.chat.json``."""

    def __init__(self, settings: Settings) -> None:
        self._directory = settings.outbox_dir

    async def send(self, message: Outgoing[ChatPayload]) -> SendResult:
        chat = message.payload
        record = {
            "id": message.id,
            "service": chat.service,
            "channel": chat.channel,
            "text": chat.text,
            "blocks": chat.blocks,
            "written_at": datetime.now(UTC).isoformat(),
        }
        name = _file_name(message.id, CHAT_SUFFIX)
        result = await asyncio.to_thread(_write, self._directory, name, _json_file(record))
        return SendResult(provider_message_id=result.provider_message_id, provider="outbox")

    async def close(self) -> None:
        pass  # nothing held open between sends
