"""The event producer: ``event_notification_service.process_event(...)`` and ``POST /api/events``.

An event is accepted like a message (:mod:`producer.enqueue`): its ``event_logs`` row is
committed with whatever other events are in flight, then its id is published to the
``events`` queue with a publisher confirm; the events workers turn it into channel messages
by the notification rules. Idempotency keys work as for messages
(:mod:`producer.idempotency`): with a key already used in the caller's scope for the same
event, the first event's id is returned and nothing is published again; for a different
event, :class:`~shared.errors.IdempotencyKeyReused`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import dramatiq
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, Table, bindparam, delete, select

from producer.background import background
from producer.enqueue import Acceptor, acceptor_for
from producer.idempotency import PYTHON_API_SCOPE, fingerprint
from producer.service import validation_error
from shared import relay, tracking
from shared.config import Settings, get_settings
from shared.db.models import EventLog, utcnow
from shared.db.rls import scope_for
from shared.errors import IdempotencyKeyReused, NotFound, PayloadTooLarge
from shared.events import digests, escalation
from shared.events.processing import QUEUED
from shared.events.queue import EVENTS_QUEUE, event_message
from shared.events.types import EventTypeName, event_type_name
from shared.json_shape import validate_shape
from shared.logging import get_logger
from shared.messages import Identifier, json_size

log = get_logger(__name__)


class EventRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    event_type: EventTypeName
    user_id: Identifier | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: Identifier | None = None

    @field_validator("event_type", mode="before")
    @classmethod
    def _event_type(cls, value: object) -> str:
        return event_type_name(value)


@dataclass(frozen=True)
class NewEvent:
    """An event to record: the request, and whose idempotency key it carries."""

    request: EventRequest
    idempotency_scope: str = ""
    request_fingerprint: str | None = None

    @classmethod
    def of(cls, request: EventRequest, idempotency_scope: str) -> NewEvent:
        if request.idempotency_key is None:
            return cls(request)
        return cls(request, idempotency_scope, fingerprint("event", request))


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
        return self.submit(_event_fields(event_type, user_id, data, idempotency_key))

    async def aprocess_event(
        self,
        event_type: str,
        user_id: str | None = None,
        data: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        return await self.asubmit(_event_fields(event_type, user_id, data, idempotency_key))

    def submit(self, fields: dict[str, Any], *, idempotency_scope: str = PYTHON_API_SCOPE) -> str:
        """Validate and queue an event from synchronous code (on the producer's loop)."""
        request = self.validate(fields)
        return background().run(self.accept(request, idempotency_scope=idempotency_scope))

    async def asubmit(self, fields: dict[str, Any], *, idempotency_scope: str = PYTHON_API_SCOPE) -> str:
        """:meth:`submit` for asyncio code, on the running loop."""
        return await self.accept(self.validate(fields), idempotency_scope=idempotency_scope)

    def validate(self, fields: dict[str, Any]) -> EventRequest:
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
        return request

    async def accept(self, request: EventRequest, *, idempotency_scope: str = PYTHON_API_SCOPE) -> str:
        acceptor = acceptor_for(self.settings, "events", _event_acceptor)
        event_id, created = await acceptor.accept(NewEvent.of(request, idempotency_scope))
        if created:
            log.info("event.queued", event_id=event_id, event_type=request.event_type)
        else:
            log.info("event.idempotent_repeat", event_id=event_id)
        return event_id

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
                "escalations": escalation.steps_of(session, event_id),
                "digests": digests.holding(session, event_id),
            }


_EVENTS = cast(Table, EventLog.__table__)
_EVENTS_BY_KEY = select(
    _EVENTS.c.idempotency_scope, _EVENTS.c.idempotency_key, _EVENTS.c.id, _EVENTS.c.request_fingerprint
).where(_EVENTS.c.idempotency_key.in_(bindparam("keys", expanding=True)))


def create_events(
    connection: Connection, events: Sequence[NewEvent]
) -> list[tuple[str, bool] | IdempotencyKeyReused]:
    """Insert the ``event_logs`` rows in one statement; ``(id, created)`` for each, in order
    (an idempotency key already used in its scope gives the first event's id for the same
    event, :class:`IdempotencyKeyReused` for another)."""
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid4()),
            "event_type": e.request.event_type,
            "user_id": e.request.user_id,
            "data": e.request.data,
            "idempotency_key": e.request.idempotency_key,
            "idempotency_scope": e.idempotency_scope,
            "request_fingerprint": e.request_fingerprint,
            "status": QUEUED,
            "matched_rules": 0,
            "created_at": now,
        }
        for e in events
    ]
    keys = [(e.idempotency_scope, e.request.idempotency_key, e.request_fingerprint) for e in events]
    return tracking.insert_keyed(connection, _EVENTS, _EVENTS_BY_KEY, rows, keys)


def _event_fields(
    event_type: str, user_id: str | None, data: dict[str, Any] | None, idempotency_key: str | None
) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "user_id": user_id,
        "data": data or {},
        "idempotency_key": idempotency_key,
    }


def _discard_events(connection: Connection, event_ids: list[str]) -> None:
    connection.execute(delete(_EVENTS).where(_EVENTS.c.id.in_(event_ids), _EVENTS.c.status == QUEUED))


def _event_message(_event: NewEvent, event_id: str) -> tuple[str, dramatiq.Message[None]]:
    return EVENTS_QUEUE, event_message(event_id)


def _event_acceptor(settings: Settings) -> Acceptor[NewEvent]:
    return Acceptor(settings, relay.EVENT, create_events, _event_message, _discard_events)
