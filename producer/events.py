"""The event producer: ``event_notification_service.process_event(...)`` and ``POST /api/events``.

An event is accepted like a message: its ``event_logs`` row is committed, then its id is
published to the ``events`` queue with a publisher confirm; the events workers turn it into
channel messages by the notification rules. With an idempotency key already used, the
first event's id is returned and nothing is published again.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from producer.service import validation_error
from shared.broker import get_broker
from shared.config import Settings, get_settings
from shared.db.models import EventLog, utcnow
from shared.db.rls import scope_for, system_scope
from shared.errors import EnqueueError, NotFound, PayloadTooLarge
from shared.events.processing import QUEUED
from shared.events.queue import publish_event
from shared.json_shape import validate_shape
from shared.logging import get_logger
from shared.messages import Identifier, json_size

log = get_logger(__name__)


class EventRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    event_type: Identifier
    user_id: Identifier | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: Identifier | None = None


class EventNotificationService:
    """Records events and queues them for rule processing."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    def process_event(
        self,
        event_type: str,
        user_id: str | None = None,
        data: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue an event (``EventType`` member or any string); returns the event id."""
        return self.submit(
            {
                "event_type": str(event_type),
                "user_id": user_id,
                "data": data or {},
                "idempotency_key": idempotency_key,
            }
        )

    async def aprocess_event(self, *args: Any, **kwargs: Any) -> str:
        return await asyncio.to_thread(self.process_event, *args, **kwargs)

    def submit(self, fields: dict[str, Any]) -> str:
        try:
            request = EventRequest.model_validate(fields)
        except pydantic.ValidationError as exc:
            raise validation_error(exc) from None
        validate_shape(request.data, "data")
        size = json_size(request.data)
        if size > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"event data is {size} bytes; the limit is {self.settings.max_payload_bytes} bytes",
                [{"field": "data", "message": "too large"}],
            )
        event_id, created = self._record(request)
        if not created:
            log.info("event.idempotent_repeat", event_id=event_id)
            return event_id
        try:
            publish_event(get_broker(self.settings), event_id)
        except EnqueueError:
            with system_scope(self.settings.database_url) as session:
                session.execute(delete(EventLog).where(EventLog.id == event_id))
            raise
        log.info("event.queued", event_id=event_id, event_type=request.event_type)
        return event_id

    def _record(self, request: EventRequest) -> tuple[str, bool]:
        key = request.idempotency_key
        # As the system, like a message: idempotency keys are unique across users.
        with system_scope(self.settings.database_url) as session:
            if key is not None:
                existing = session.scalar(select(EventLog.id).where(EventLog.idempotency_key == key))
                if existing is not None:
                    return existing, False
            row = EventLog(
                id=str(uuid.uuid4()),
                event_type=request.event_type,
                user_id=request.user_id,
                data=request.data,
                idempotency_key=key,
                status=QUEUED,
                created_at=utcnow(),
            )
            try:
                with session.begin_nested():
                    session.add(row)
                    session.flush()
            except IntegrityError:
                winner = session.scalar(select(EventLog.id).where(EventLog.idempotency_key == key))
                if winner is None:
                    raise
                return winner, False
            return row.id, True

    def get_event(self, event_id: str, *, for_user: str | None = None) -> dict[str, Any]:
        """The event as recorded, with what processing it produced; with ``for_user``, only
        that user's event (another's is not found)."""
        from shared.db.models import NotificationLog

        with scope_for(self.settings.database_url, for_user) as session:
            row = session.get(EventLog, event_id)
            if row is None:
                raise NotFound(f"no event with id {event_id}")
            message_ids = list(
                session.scalars(select(NotificationLog.id).where(NotificationLog.event_id == event_id))
            )
            return {
                "id": row.id,
                "eventType": row.event_type,
                "userId": row.user_id,
                "data": row.data,
                "status": row.status,
                "matchedRules": row.matched_rules,
                "messageIds": message_ids,
                "createdAt": row.created_at.isoformat(),
                "processedAt": row.processed_at.isoformat() if row.processed_at else None,
            }
