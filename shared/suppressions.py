"""The email suppression list: addresses that bounced hard or whose owner complained.

Written where bounces and complaint reports come in (:mod:`producer.bounces`), read by the
email workers in the claim's transaction for every batch of emails (one query for the batch),
listed and emptied by operators through the API. Addresses are compared lowercased.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.models import EmailSuppression, utcnow

HARD_BOUNCE, COMPLAINT = "hard_bounce", "complaint"
#: ``errorCode`` of an email skipped because its address is suppressed.
SKIPPED_CODE = "suppressed"


def normalized(address: str) -> str:
    return address.strip().lower()


def add(session: Session, address: str, *, reason: str, detail: str | None, message_id: str | None) -> bool:
    """Suppress ``address``; False when it already was (the first reason is kept)."""
    try:
        with session.begin_nested():
            session.add(
                EmailSuppression(
                    address=normalized(address),
                    reason=reason,
                    detail=detail,
                    message_id=message_id,
                    created_at=utcnow(),
                )
            )
            session.flush()
    except IntegrityError:
        return False
    return True


def among(connection: Connection, addresses: Iterable[str]) -> dict[str, str]:
    """Which of ``addresses`` are suppressed, each with its reason (keys as given)."""
    wanted = {normalized(a): a for a in addresses if a}
    if not wanted:
        return {}
    rows = connection.execute(
        select(EmailSuppression.address, EmailSuppression.reason).where(EmailSuppression.address.in_(wanted))
    )
    return {wanted[row.address]: row.reason for row in rows}


def listed(session: Session, *, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` entries in address order, past ``after``."""
    query = select(EmailSuppression).order_by(EmailSuppression.address).limit(limit)
    if after is not None:
        query = query.where(EmailSuppression.address > after)
    return [view(row) for row in session.scalars(query)]


def remove(session: Session, address: str) -> bool:
    """Lift the suppression of ``address``; False when there was none."""
    done = session.execute(delete(EmailSuppression).where(EmailSuppression.address == normalized(address)))
    return bool(getattr(done, "rowcount", 0))


def view(row: EmailSuppression) -> dict[str, Any]:
    return {
        "address": row.address,
        "reason": row.reason,
        "detail": row.detail,
        "messageId": row.message_id,
        "createdAt": row.created_at.isoformat(),
    }
