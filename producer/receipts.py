"""Receipts: what a provider says about a message after it accepted it.

``sent`` means the provider took the message; a receipt says what happened next. Each is
kept as a row (``message_receipts``) in one vocabulary, the provider's own word or code
beside it, and moves the message's status forward, never back:

- ``delivered`` (and ``read``, which implies it) turns a ``sent`` message ``delivered``; it
  never touches a message that already ended ``failed``, so a late ``delivered`` cannot
  overwrite a bounce;
- ``undelivered`` turns a ``sent`` or ``delivered`` message ``failed``, with the provider's
  code as ``errorCode``: the final word on it;
- ``accepted`` (handed on to the carrier) and ``unsubscribed`` (the recipient used the
  email's one-click link, :mod:`producer.unsubscribe`) are kept, and change nothing.

A receipt heard twice (a provider's retry, a replayed callback) is recorded once: the
second answers as a repeat and changes nothing. A receipt for a message still on its way
(its worker has not yet recorded ``sent``) is kept and moves nothing; the status it would
have set is then the provider's next receipt's to set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.channels import Status
from shared.db.models import MessageReceipt, NotificationLog, utcnow

ReceiptType = Literal["accepted", "delivered", "undelivered", "read", "unsubscribed"]


@dataclass(frozen=True)
class Receipt:
    message_id: str
    type: ReceiptType
    provider: str
    #: The provider's own word or code (``undelivered 30003``).
    code: str | None
    #: Unique per receipt: the same one heard again has the same key.
    dedupe_key: str
    detail: str | None = None
    occurred_at: datetime | None = None
    #: What ``errorCode`` becomes when this receipt fails the message.
    error_code: str | None = None


def record(session: Session, receipt: Receipt) -> bool:
    """Keep ``receipt`` and move its message's status; False when it was heard before (then
    nothing changes). The message must exist (the caller looked it up)."""
    user_id = session.scalar(select(NotificationLog.user_id).where(NotificationLog.id == receipt.message_id))
    row = MessageReceipt(
        id=str(uuid.uuid4()),
        message_id=receipt.message_id,
        user_id=user_id,
        type=receipt.type,
        code=receipt.code,
        detail=receipt.detail,
        provider=receipt.provider,
        dedupe_key=receipt.dedupe_key,
        occurred_at=receipt.occurred_at or utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return False  # the unique dedupe_key: heard before
    _advance(session, receipt, row.occurred_at)
    return True


def _advance(session: Session, receipt: Receipt, at: datetime) -> None:
    this = NotificationLog.id == receipt.message_id
    if receipt.type in ("delivered", "read"):
        session.execute(
            update(NotificationLog)
            .where(this, NotificationLog.status == Status.SENT.value)
            .values(status=Status.DELIVERED.value, delivered_at=at, updated_at=utcnow())
        )
    elif receipt.type == "undelivered":
        said = f"{receipt.provider} reports the message undelivered" + (
            f": {receipt.detail}" if receipt.detail else ""
        )
        session.execute(
            update(NotificationLog)
            .where(this, NotificationLog.status.in_([Status.SENT.value, Status.DELIVERED.value]))
            .values(
                status=Status.FAILED.value,
                error_code=receipt.error_code or "undelivered",
                last_error=said[:1000],
                updated_at=utcnow(),
            )
        )


def of_message(session: Session, message_id: str) -> list[dict[str, Any]]:
    """The message's receipts as the HTTP API shows them, in the order they happened."""
    rows = session.scalars(
        select(MessageReceipt)
        .where(MessageReceipt.message_id == message_id)
        .order_by(MessageReceipt.occurred_at, MessageReceipt.created_at)
    )
    return [
        {
            "type": r.type,
            "code": r.code,
            "provider": r.provider,
            "detail": r.detail,
            "occurredAt": r.occurred_at.isoformat(),
        }
        for r in rows
    ]
