"""What the webhook pool keeps of every attempt, written in the same transaction as the
attempt's outcome: one ``webhook_delivery_logs`` row, and for a configured endpoint its
health record (consecutive failures, since when it has been failing, and whether it is
disabled: 410 Gone at once, or failing for WEBHOOK_DISABLE_AFTER, with the notices of
:mod:`workers.webhook.alerts`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from sqlalchemy import Connection, Table, insert
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.models import WebhookConfiguration, WebhookDeliveryLog, utcnow
from shared.errors import DeliveryError
from shared.logging import get_logger
from shared.webhooks.headers import RESERVED_HEADERS, masked
from workers.delivery.ledger import Record
from workers.providers.base import Exchange
from workers.providers.http import REDACTED
from workers.webhook import alerts as webhook_alerts

log = get_logger(__name__)

#: How much of a receiver's answer is kept per attempt, and so shown by ``.../test`` and the
#: delivery log: enough to see why a receiver refused, too little to read another service
#: through an endpoint pointed at it. Cut at a character boundary.
RESPONSE_EXCERPT_BYTES = 4 * 1024

#: The answer that disables an endpoint at once: the receiver says it is gone for good.
GONE_CODE = "http_410"

_LOGS = cast(Table, WebhookDeliveryLog.__table__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt as the delivery log keeps it."""

    message_id: str
    attempt: int
    #: The endpoint the attempt went to (None for an ad-hoc URL).
    endpoint_id: str | None
    exchange: Exchange
    error: DeliveryError | None
    #: Whether the attempt says something about the endpoint's health (not, e.g., an open
    #: circuit or a deleted endpoint).
    counts_for_health: bool


def write_attempts(settings: Settings, connection: Connection, records: Sequence[Record]) -> None:
    attempts = [r.extra for r in records if isinstance(r.extra, Attempt)]
    if not attempts:
        return
    # Health first, in the order of the attempts: the delivery log insert's foreign key
    # takes a KEY SHARE lock on the endpoint row, and taking the row's update lock after it
    # could deadlock with another batch doing the same the other way round.
    existing = _record_health(settings, connection, attempts)
    connection.execute(insert(_LOGS), [_log_row(a, existing) for a in attempts])


def _record_health(settings: Settings, connection: Connection, attempts: list[Attempt]) -> set[str]:
    """Update each endpoint's health from its attempts; returns the endpoints that exist (a
    deleted endpoint's attempts are logged without it)."""
    ids = sorted({a.endpoint_id for a in attempts if a.endpoint_id is not None})
    if not ids:
        return set()
    session = Session(bind=connection)
    existing: set[str] = set()
    for endpoint_id in ids:
        # FOR NO KEY UPDATE: the health columns are no key, so inserts referencing the row
        # (delivery logs of other attempts) are not blocked.
        row = session.get(WebhookConfiguration, endpoint_id, with_for_update={"key_share": True})
        if row is None:
            continue
        existing.add(endpoint_id)
        for a in attempts:
            if a.endpoint_id == endpoint_id and a.counts_for_health:
                _apply(settings, session, row, a.error)
    session.flush()
    return existing


def _apply(
    settings: Settings, session: Session, row: WebhookConfiguration, error: DeliveryError | None
) -> None:
    now = utcnow()
    if error is None:
        row.consecutive_failures = 0
        row.failing_since = None
        return
    row.consecutive_failures += 1
    row.failing_since = row.failing_since or now
    reason: str | None = None
    if error.code == GONE_CODE:
        reason = "the endpoint answered 410 Gone"
    elif now - row.failing_since >= timedelta(milliseconds=settings.webhooks.disable_after_ms):
        since = row.failing_since.isoformat()
        reason = f"failing since {since} ({row.consecutive_failures} attempts in a row)"
    if reason is not None and row.disabled_at is None:
        row.active = False
        row.disabled_at = now
        row.disabled_reason = reason
        row.updated_at = now
        log.warning("webhook.endpoint_disabled", configuration_id=row.id, reason=reason)
        webhook_alerts.endpoint_disabled(session, settings, row)


def _log_row(a: Attempt, existing: set[str]) -> dict[str, object]:
    sent = a.exchange
    return {
        "notification_log_id": a.message_id,
        "configuration_id": a.endpoint_id if a.endpoint_id in existing else None,
        "attempt": a.attempt,
        "url": sent.url,
        "request_headers": _masked_custom_headers(sent.request_headers),
        "request_body": sent.request_body,
        "response_status": sent.status,
        "response_headers": sent.response_headers,
        "response_body": _excerpt(sent.response_excerpt),
        "error_class": None if a.error is None else a.error.code,
        "error_message": None if a.error is None else a.error.message,
        "duration_ms": sent.duration_ms,
        "timings": sent.timings or None,
        "success": a.error is None,
        "created_at": utcnow(),
    }


def _excerpt(answer: str | None) -> str | None:
    if not answer:
        return None
    return answer.encode()[:RESPONSE_EXCERPT_BYTES].decode(errors="ignore")


def _masked_custom_headers(sent: dict[str, str]) -> dict[str, str]:
    """The request's headers as the log keeps them: ours as they were (the signature already
    redacted by the provider), the endpoint's own masked, for they are its secrets."""
    return {
        name: value if name.lower() in RESERVED_HEADERS or value == REDACTED else masked(value)
        for name, value in sent.items()
    }
