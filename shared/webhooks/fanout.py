"""Fan-out of an event to the webhook endpoints subscribed to its type.

Each subscribed, active endpoint gets its own message (its own ``notification_logs`` row on
the ``webhook`` queue, with its own retries), so a slow or dead endpoint never delays the
others. The body follows Standard Webhooks: ``{"type", "timestamp", "data"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import WebhookConfiguration
from shared.payloads import Stored, WebhookPayload
from shared.webhooks.endpoints import subscribed
from shared.webhooks.ordering import ORDERING_KEY_FIELD


def retry_schedule(row: WebhookConfiguration, settings: Settings) -> list[int]:
    """The delays before each retry to ``row``: its own schedule or the default, cut or
    stretched (repeating the last delay) to its ``max_retries``."""
    schedule = list(row.retry_schedule_ms or settings.webhooks.retry_schedule_ms)
    if row.max_retries is not None:
        if row.max_retries <= len(schedule):
            schedule = schedule[: row.max_retries]
        else:
            schedule += [schedule[-1] if schedule else 0] * (row.max_retries - len(schedule))
    return schedule


def endpoint_message(
    row: WebhookConfiguration,
    settings: Settings,
    *,
    event_type: str,
    data: dict[str, Any],
    occurred_at: datetime,
    event_id: str | None = None,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    retries: bool = True,
) -> tracking.NewMessage:
    """The message that carries one event to one endpoint; ``retries=False`` gives it one
    attempt only (a test event)."""
    schedule = retry_schedule(row, settings) if retries else []
    body = {"type": event_type, "timestamp": occurred_at.astimezone(UTC).isoformat(), "data": data}
    ordering_key = data.get(ORDERING_KEY_FIELD)
    payload = WebhookPayload(
        url=row.url,
        body=body,
        configuration_id=row.id,
        retry_schedule_ms=tuple(schedule),
        ordering_key=ordering_key if isinstance(ordering_key, str) and ordering_key else None,
    )
    return tracking.NewMessage(
        channel=Channel.WEBHOOK,
        recipient=row.url,
        payload=Stored(payload),
        max_attempts=len(schedule) + 1,
        user_id=user_id,
        event_type=event_type,
        event_id=event_id,
        idempotency_key=idempotency_key,
    )


def active_endpoints(session: Session) -> list[WebhookConfiguration]:
    """The endpoints events may go to, oldest first."""
    return list(
        session.scalars(
            select(WebhookConfiguration)
            .where(WebhookConfiguration.active.is_(True), WebhookConfiguration.disabled_at.is_(None))
            .order_by(WebhookConfiguration.created_at)
        )
    )


def fan_out(
    session: Session,
    settings: Settings,
    *,
    event_id: str | None,
    event_type: str,
    data: dict[str, Any],
    user_id: str | None,
    occurred_at: datetime,
    key: str | None = None,
    endpoints: Sequence[WebhookConfiguration] | None = None,
) -> list[str]:
    """Create (in ``session``, uncommitted) one webhook message per active endpoint subscribed
    to ``event_type`` and return their ids; the caller publishes them after commit. Running it
    twice for the same event (or ``key``, for what is not an event: a receipt) creates nothing
    new and returns the same ids. A caller fanning out many events in one transaction reads
    ``endpoints`` once (:func:`active_endpoints`) and passes them."""
    ids = []
    for row in active_endpoints(session) if endpoints is None else endpoints:
        if not subscribed(row, event_type):
            continue
        message = endpoint_message(
            row,
            settings,
            event_type=event_type,
            data=data,
            occurred_at=occurred_at,
            event_id=event_id,
            user_id=user_id,
            idempotency_key=f"webhook:{key or event_id}:{row.id}",
        )
        message_id, _ = tracking.create(session, message)
        ids.append(message_id)
    return ids
