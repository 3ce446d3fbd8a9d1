"""Bounces and complaints: what mail servers send back about an email, read with the standard
library's ``email`` package and turned into receipts (:mod:`producer.receipts`).

Two kinds of report, both ``multipart/report`` (RFC 6522):

- a delivery status notification (RFC 3464, ``report-type=delivery-status``): one block per
  recipient in its ``message/delivery-status`` part. ``Action: failed`` with a ``5.x.x``
  status is a hard bounce: the message ends ``failed`` and the address is suppressed.
  ``delayed``, or a ``4.x.x`` status, is a soft bounce: kept as a receipt, nothing else.
- a complaint (ARF, RFC 5965, ``report-type=feedback-report``): the recipient marked the
  email as spam. Kept as a receipt, and the address is suppressed.

Either carries the original message or its headers (``message/rfc822`` or
``text/rfc822-headers``), where our ``X-KAI-Message-Id`` header (or the ``Message-ID`` we
derived from our id) names the message. Some servers return neither; with
``EMAIL_BOUNCE_ADDRESS`` set, the address the report was sent to (each email's own return
path, :mod:`shared.verp`) names it instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.parser import HeaderParser

from sqlalchemy.orm import Session

from producer import receipts
from shared import suppressions, verp
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope

#: Our own header on every email, and the Message-ID we build from our id (workers/providers/mime.py).
MESSAGE_ID_HEADER = "X-KAI-Message-Id"
_OUR_MESSAGE_ID = re.compile(r"<kai\.([0-9a-fA-F-]{36})@[^>]+>")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class NotAReport(ValueError):
    """The body is not a bounce or complaint report we can read, or names no message of ours."""


@dataclass(frozen=True)
class Finding:
    """One thing a report says about one of our emails."""

    message_id: str
    type: receipts.ReceiptType
    #: For a bounce: ``hard`` or ``soft`` and the status (``hard 5.1.1``); for a complaint,
    #: its feedback type (``abuse``).
    code: str
    recipient: str | None
    detail: str | None
    #: What suppresses the recipient's address, if anything.
    suppress: str | None
    #: A hard bounce fails the email: its ``errorCode`` (``bounced_5.1.1``).
    error_code: str | None = None


def read(raw: bytes, *, bounce_address: str | None = None, envelope_to: Sequence[str] = ()) -> list[Finding]:
    """What the report ``raw`` says; :class:`NotAReport` when it is not one we can read.
    ``envelope_to``: the recipients the report was delivered to, where known (the SMTP
    listener's RCPT TO)."""
    report = message_from_bytes(raw, policy=policy.default)
    if report.get_content_type() != "multipart/report":
        raise NotAReport("the body is not a multipart/report (a bounce or a complaint report)")
    kind = report.get_param("report-type", header="content-type")
    message_id = _our_message_id(report) or _returned_to(report, bounce_address, envelope_to)
    if message_id is None:
        raise NotAReport(
            "the report names no message of ours (no X-KAI-Message-Id in the original, and not "
            "sent to a return path of EMAIL_BOUNCE_ADDRESS)"
        )
    if kind == "delivery-status":
        return _bounces(report, message_id)
    if kind == "feedback-report":
        return [_complaint(report, message_id)]
    raise NotAReport(f"a report of type {kind!r}: only delivery-status and feedback-report are read")


def _parts(report: Message, content_type: str) -> list[Message]:
    return [part for part in report.walk() if part.get_content_type() == content_type]


def _our_message_id(report: Message) -> str | None:
    for original in _originals(report):
        ours = original.get(MESSAGE_ID_HEADER)
        if ours:
            return str(ours).strip()
        found = _OUR_MESSAGE_ID.search(str(original.get("Message-ID", "")))
        if found:
            return found.group(1)
    return None


#: Headers where receiving servers keep the envelope recipient a report was delivered to.
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")


def _returned_to(report: Message, bounce_address: str | None, envelope_to: Sequence[str]) -> str | None:
    """The message whose return path (VERP) the report was sent to."""
    if bounce_address is None:
        return None
    candidates = [*envelope_to, *(str(v) for name in RECIPIENT_HEADERS for v in report.get_all(name) or [])]
    for candidate in candidates:
        found = verp.message_id(bounce_address, candidate)
        if found is not None:
            return found
    return None


def _originals(report: Message) -> list[Message]:
    """The returned original messages (or their headers), as messages."""
    found: list[Message] = []
    for part in _parts(report, "message/rfc822"):
        payload = part.get_payload()
        found += [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    for part in _parts(report, "text/rfc822-headers"):
        text = part.get_content() if isinstance(part, EmailMessage) else str(part.get_payload())
        found.append(HeaderParser(policy=policy.default).parsestr(text))
    return found


def _fields(report: Message, content_type: str) -> list[Message]:
    """The header blocks of a ``message/delivery-status`` or ``message/feedback-report`` part."""
    blocks: list[Message] = []
    for part in _parts(report, content_type):
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks += [p for p in payload if isinstance(p, Message)]
        else:  # some reporters send the fields as one text block
            blocks.append(HeaderParser(policy=policy.default).parsestr(str(payload)))
    return blocks


def _address(field: object) -> str | None:
    """``rfc822; user@example.com`` → ``user@example.com``."""
    if not field:
        return None
    value = str(field)
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _bounces(report: Message, message_id: str) -> list[Finding]:
    found: list[Finding] = []
    for block in _fields(report, "message/delivery-status"):
        action = str(block.get("Action", "")).strip().lower()
        if not action:
            continue  # the per-message block (Reporting-MTA …)
        status = _STATUS.search(str(block.get("Status", "")))
        code = ".".join(status.groups()) if status else ""
        hard = action == "failed" and code.startswith("5")
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: not a bounce
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        diagnostic = block.get("Diagnostic-Code")
        found.append(
            Finding(
                message_id=message_id,
                type="bounced",
                code=f"{'hard' if hard else 'soft'} {code or action}",
                recipient=recipient,
                detail=_address(diagnostic) if diagnostic else None,
                suppress=suppressions.HARD_BOUNCE if hard else None,
                error_code=f"bounced_{code}" if hard else None,
            )
        )
    if not found:
        raise NotAReport("the delivery status notification reports no failed or delayed recipient")
    return found


def _complaint(report: Message, message_id: str) -> Finding:
    blocks = _fields(report, "message/feedback-report")
    if not blocks:
        raise NotAReport("the feedback report has no message/feedback-report part")
    block = blocks[0]
    return Finding(
        message_id=message_id,
        type="complained",
        code=str(block.get("Feedback-Type", "abuse")).strip().lower(),
        recipient=_address(block.get("Original-Rcpt-To")),
        detail=str(block.get("User-Agent")) if block.get("User-Agent") else None,
        suppress=suppressions.COMPLAINT,
    )


def record(settings: Settings, findings: list[Finding]) -> list[str]:
    """:func:`apply` in a transaction of its own, as the system: a report is about whichever
    user the email was for."""
    with system_scope(settings.database_url) as session:
        return apply(session, settings, findings)


def apply(session: Session, settings: Settings, findings: list[Finding]) -> list[str]:
    """Record each finding as a receipt of its email (and suppress its address where it
    says so); the ids of the webhook messages that forward them. :class:`NotAReport` when
    the message is not an email of ours."""
    forwarded: list[str] = []
    for finding in findings:
        message = session.get(NotificationLog, finding.message_id)
        if message is None or message.channel != Channel.EMAIL.value:
            raise NotAReport(f"no email with id {finding.message_id}")
        address = finding.recipient or message.recipient
        if finding.suppress is not None:
            suppressions.add(
                session, address, reason=finding.suppress, detail=finding.detail, message_id=message.id
            )
        receipt = receipts.Receipt(
            message_id=message.id,
            type=finding.type,
            provider="email",
            code=finding.code,
            dedupe_key=f"email:{message.id}:{finding.type}:{finding.code}:{address.lower()}",
            detail=finding.detail,
            error_code=finding.error_code,
        )
        forwarded += receipts.record(
            session, settings, receipt, receipts.Of(message.user_id, message.channel)
        )
    return forwarded
