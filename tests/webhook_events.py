"""Helpers for webhook endpoint tests: create an endpoint, and emit an event the way the
events pipeline does (fan out in a transaction, commit, then publish each message)."""

from __future__ import annotations

import uuid
from typing import Any

from producer.webhooks import WebhookAdmin
from shared.broker import get_broker, publish
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import WebhookConfiguration, WebhookDeliveryLog, utcnow
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.webhooks.fanout import fan_out
from tests.sinks.webhook_receiver import WebhookReceiver


def create_endpoint(settings: Settings, url: str, **fields: Any) -> tuple[str, str]:
    """A new endpoint's id and secret."""
    created = WebhookAdmin(settings).create({"url": url, **fields}).view
    return str(created["id"]), str(created["secret"])


def emit(settings: Settings, event_type: str, data: dict[str, Any], user_id: str | None = None) -> list[str]:
    with system_scope(settings.database_url) as session:
        ids = fan_out(
            session,
            settings,
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            data=data,
            user_id=user_id,
            occurred_at=utcnow(),
        )
    broker = get_broker(settings)
    for message_id in ids:
        publish(broker, Channel.WEBHOOK, message_id)
    return ids


def endpoint_row(settings: Settings, endpoint_id: str) -> WebhookConfiguration:
    with session_scope(settings.database_url) as session:
        row = session.get(WebhookConfiguration, endpoint_id)
        assert row is not None
        session.expunge(row)
        return row


def attempts_of(settings: Settings, message_id: str) -> list[WebhookDeliveryLog]:
    from sqlalchemy import select

    with session_scope(settings.database_url) as session:
        rows = list(
            session.scalars(
                select(WebhookDeliveryLog)
                .where(WebhookDeliveryLog.notification_log_id == message_id)
                .order_by(WebhookDeliveryLog.attempt)
            )
        )
        session.expunge_all()
        return rows


def receiver_with_endpoint(settings: Settings, **fields: object) -> tuple[WebhookReceiver, str]:
    """A started receiver (the caller stops it) and a new endpoint pointing at it; the
    receiver verifies with the endpoint's secret."""
    receiver = WebhookReceiver().start()
    endpoint_id, secret = create_endpoint(settings, receiver.url, **fields)
    receiver.set_secret(secret)
    return receiver, endpoint_id
