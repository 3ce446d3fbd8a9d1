"""Managing webhook endpoints: the operations behind ``/api/webhooks``, without HTTP.

Each method runs its own transaction and publishes what it queued only after the commit
(the row is the truth; the scheduler rescues a publish lost in between).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pydantic
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from producer.idempotent_create import Created, IdempotencyKey, create_once
from producer.merge_patch import merge_patch
from producer.service import validation_error
from shared.broker import get_broker, publish
from shared.channels import Channel
from shared.config import Settings
from shared.db import keyset
from shared.db.models import WebhookDeliveryLog, utcnow
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.errors import ValidationError
from shared.tracking import create as create_message
from shared.webhooks import circuit
from shared.webhooks import endpoints as webhook_endpoints
from shared.webhooks import replay as webhook_replay
from shared.webhooks.endpoints import EndpointFields
from shared.webhooks.fanout import endpoint_message

#: Event type of the message ``POST .../test`` sends.
TEST_EVENT_TYPE = "webhook.test"
#: An endpoint's delivery attempts are listed newest first.
LOGS_ORDER = keyset.Keyset((WebhookDeliveryLog.id,), descending=True)


def parse_fields(body: dict[str, Any]) -> EndpointFields:
    try:
        return EndpointFields.model_validate(body)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None


def log_view(row: WebhookDeliveryLog) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "messageId": row.notification_log_id,
        "configurationId": row.configuration_id,
        "attempt": row.attempt,
        "url": row.url,
        "success": row.success,
        "requestHeaders": row.request_headers,
        "requestBody": row.request_body,
        "responseStatus": row.response_status,
        "responseHeaders": row.response_headers,
        "responseBody": row.response_body,
        "errorClass": row.error_class,
        "errorMessage": row.error_message,
        "durationMs": row.duration_ms,
        "timings": row.timings or {},
        "createdAt": row.created_at.isoformat(),
    }


class WebhookAdmin:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _publish(self, message_ids: list[str]) -> None:
        broker = get_broker(self.settings)
        for message_id in message_ids:
            publish(broker, Channel.WEBHOOK, message_id)

    def list_page(
        self, after: keyset.Position | None, limit: int
    ) -> tuple[list[dict[str, Any]], keyset.Position | None]:
        """A page of endpoints, oldest first, and the position of the next page (or None)."""
        with session_scope(self.settings.database_url) as session:
            rows, more = webhook_endpoints.list_page(session, after, limit)
            return [webhook_endpoints.view(row, self.settings) for row in rows], more

    def get(self, endpoint_id: str) -> dict[str, Any]:
        with session_scope(self.settings.database_url) as session:
            view = webhook_endpoints.view(webhook_endpoints.get(session, endpoint_id), self.settings)
        return {**view, "circuit": self._circuit(endpoint_id)}

    def _circuit(self, endpoint_id: str) -> dict[str, object] | None:
        """The endpoint's circuit breaker as the workers share it in Redis; None without Redis
        (each worker process then keeps its own) or when Redis does not answer."""
        if self.settings.redis_url is None:
            return None
        try:
            found = circuit.read(
                circuit.reader(self.settings.redis_url), endpoint_id, self.settings.webhooks.breaker_threshold
            )
        except redis.RedisError:
            return None
        return found.view()

    def create(self, body: dict[str, Any], key: IdempotencyKey | None = None) -> Created:
        """Create the endpoint; its view carries its signing secret. With ``key``, a repeat of
        the request gets the endpoint it created (with its current secret) instead."""
        fields = parse_fields(body)

        def create(session: Session) -> str:
            return webhook_endpoints.create(session, self.settings, fields).row.id

        def show(session: Session, endpoint_id: str) -> dict[str, Any]:
            row = webhook_endpoints.get(session, endpoint_id)
            secret = webhook_endpoints.signing_secrets(row, self.settings)[0]
            return {**webhook_endpoints.view(row, self.settings), "secret": secret}

        url = self.settings.database_url
        return create_once(url, key, "webhook_configuration", fields, create, show)

    def replace(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        fields = parse_fields(body)
        with session_scope(self.settings.database_url) as session:
            row = webhook_endpoints.get(session, endpoint_id, for_update=True)
            webhook_endpoints.replace(session, self.settings, row, fields)
            return webhook_endpoints.view(row, self.settings)

    def patch(self, endpoint_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch to the endpoint's document (:mod:`producer.merge_patch`)."""
        with session_scope(self.settings.database_url) as session:
            row = webhook_endpoints.get(session, endpoint_id, for_update=True)
            fields = parse_fields(merge_patch(webhook_endpoints.document(row, self.settings), patch))
            webhook_endpoints.replace(session, self.settings, row, fields)
            return webhook_endpoints.view(row, self.settings)

    def delete(self, endpoint_id: str) -> None:
        # As the system: the endpoint's pending deliveries, failed with it, are any user's.
        with system_scope(self.settings.database_url) as session:
            webhook_endpoints.delete(session, endpoint_id)

    def regenerate_secret(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        grace = body.get("gracePeriodMs")
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 0):
            message = "must be a non-negative number of milliseconds"
            raise ValidationError(
                f"gracePeriodMs: {message}", [{"field": "gracePeriodMs", "message": message}]
            )
        with session_scope(self.settings.database_url) as session:
            created = webhook_endpoints.regenerate_secret(session, self.settings, endpoint_id, grace)
            return {
                "id": created.row.id,
                "secret": created.secret,
                "previousSecretExpiresAt": _iso(created.row.previous_secret_expires_at),
            }

    def send_test(self, endpoint_id: str) -> str:
        """Queue a signed ``webhook.test`` event for the endpoint (one attempt, no retries)."""
        now = utcnow()
        with system_scope(self.settings.database_url) as session:
            row = webhook_endpoints.get(session, endpoint_id)
            message = endpoint_message(
                row,
                self.settings,
                event_type=TEST_EVENT_TYPE,
                data={"message": "This is a test event from KAI Messaging.", "configurationId": endpoint_id},
                occurred_at=now,
                retries=False,
            )
            message_id, _ = create_message(session, message)
        self._publish([message_id])
        return message_id

    def first_attempt(self, message_id: str) -> dict[str, Any] | None:
        with session_scope(self.settings.database_url) as session:
            row = session.scalars(
                select(WebhookDeliveryLog)
                .where(WebhookDeliveryLog.notification_log_id == message_id)
                .order_by(WebhookDeliveryLog.id)
                .limit(1)
            ).first()
            return None if row is None else log_view(row)

    def logs(
        self, endpoint_id: str, *, status: str | None, after: keyset.Position | None, limit: int
    ) -> tuple[list[dict[str, Any]], keyset.Position | None]:
        """A page of the endpoint's attempts, newest first, and the position of the next page."""
        query = select(WebhookDeliveryLog).where(WebhookDeliveryLog.configuration_id == endpoint_id)
        if status == "succeeded":
            query = query.where(WebhookDeliveryLog.success.is_(True))
        elif status == "failed":
            query = query.where(WebhookDeliveryLog.success.is_(False))
        elif status is not None and status.isascii() and status.isdigit() and len(status) <= 3:
            query = query.where(WebhookDeliveryLog.response_status == int(status))
        elif status is not None:
            raise _query_error("status", "must be succeeded, failed or an HTTP status code")
        with session_scope(self.settings.database_url) as session:
            webhook_endpoints.get(session, endpoint_id)
            rows, more = keyset.page(session, query, LOGS_ORDER, after, limit)
            return [log_view(row) for row in rows], more

    def replay(self, message_id: str) -> str:
        with system_scope(self.settings.database_url) as session:
            webhook_replay.replay(session, message_id)
        self._publish([message_id])
        return message_id

    def recover(self, endpoint_id: str, body: dict[str, Any]) -> list[str]:
        raw = body.get("since")
        try:
            since = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            since = None
        if since is None or since.tzinfo is None:
            raise _query_error(
                "since", "must be an ISO 8601 time with a UTC offset, e.g. 2026-11-26T12:00:00Z"
            )
        with system_scope(self.settings.database_url) as session:
            webhook_endpoints.get(session, endpoint_id)
            ids = webhook_replay.recover(session, endpoint_id, since)
        self._publish(ids)
        return ids


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _query_error(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", [{"field": field, "message": message}])
