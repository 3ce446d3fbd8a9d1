"""The producer: validate → record → publish, for every channel. No HTTP here.

A message is accepted once its ``notification_logs`` row is committed AND the broker has
confirmed the publish of its id. If the broker refuses, the row is removed again and the
caller gets :class:`~shared.errors.EnqueueError`: nothing half-accepted is left behind.
Should the process die between the commit and the publish, the scheduler finds the row
(queued, never picked up) and publishes it, so an accepted message is never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import pydantic

from producer import message_log, receipts, scheduling
from producer.background import background
from producer.enqueue import enqueuer_for
from producer.idempotency import PYTHON_API_SCOPE, fingerprint
from shared import chat_targets, netguard, tracking
from shared.channels import Channel, Status
from shared.config import Settings, get_settings
from shared.db.models import utcnow
from shared.db.rls import scope_for
from shared.db.session import session_scope
from shared.errors import EnqueueError, IdempotencyKeyReused, NotFound, PayloadTooLarge, ValidationError
from shared.events import contacts
from shared.json_shape import validate_shape
from shared.logging import get_logger
from shared.messages import (
    ChatDestination,
    ChatRequest,
    EmailRequest,
    InAppRequest,
    PushRequest,
    SmsRequest,
    WebhookRequest,
    _Request,
    json_size,
)
from shared.payloads import EmailPayload, Payload, SmsPayload, Stored, Templated, WebhookPayload
from shared.templates import experiments as template_experiments
from shared.templates import messages as template_messages
from shared.templates import store as template_store
from shared.templates.requests import TEMPLATED_MODELS, TemplatedRequest

log = get_logger(__name__)

#: Filled in by the producer after validation (a templated request's pinned template
#: version), so a repeat of the same request may see it differently.
UNFINGERPRINTED = frozenset({"template_ref"})
#: Left out of the fingerprint while false: a request without the flag keeps the fingerprint
#: it had before the flag existed, so a keyed retry across the upgrade is still a repeat.
UNFINGERPRINTED_UNLESS_SET = frozenset({"transactional"})


def validation_error(exc: pydantic.ValidationError) -> ValidationError:
    """A pydantic error as our ValidationError, with camelCase field paths."""
    details = []
    for item in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in item.get("loc", ())]
        message = item.get("msg", "invalid value").removeprefix("Value error, ")
        details.append({"field": ".".join(loc) or None, "message": message, "type": item.get("type")})
    summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details)
    return ValidationError(summary or "invalid request", details)


D = TypeVar("D", bound=ChatDestination)


class NotificationService:
    """Sends messages on every channel. Each ``send_*`` returns the message id as soon as the
    message is enqueued (not delivered); ``get_status`` tells where it stands."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    # -- sending -------------------------------------------------------------------------

    def send_email(self, **fields: Any) -> str:
        return self.submit(Channel.EMAIL, fields)

    def send_sms(self, **fields: Any) -> str:
        return self.submit(Channel.SMS, fields)

    def send_webhook(self, **fields: Any) -> str:
        return self.submit(Channel.WEBHOOK, fields)

    def send_in_app_notification(self, **fields: Any) -> str:
        return self.submit(Channel.IN_APP, fields)

    def send_push(self, **fields: Any) -> str:
        """A notification to every device ``user_id`` registered (browsers, Android, iOS)."""
        return self.submit(Channel.PUSH, fields)

    def send_chat(self, **fields: Any) -> str:
        """A Slack or Microsoft Teams message (``service``): to a Slack ``channel``, a
        ``webhook_url``, or the chat contacts of ``user_id``."""
        return self.submit(Channel.CHAT, fields)

    async def asend_email(self, **fields: Any) -> str:
        return await self.asubmit(Channel.EMAIL, fields)

    async def asend_sms(self, **fields: Any) -> str:
        return await self.asubmit(Channel.SMS, fields)

    async def asend_webhook(self, **fields: Any) -> str:
        return await self.asubmit(Channel.WEBHOOK, fields)

    async def asend_in_app_notification(self, **fields: Any) -> str:
        return await self.asubmit(Channel.IN_APP, fields)

    async def asend_push(self, **fields: Any) -> str:
        return await self.asubmit(Channel.PUSH, fields)

    async def asend_chat(self, **fields: Any) -> str:
        return await self.asubmit(Channel.CHAT, fields)

    def submit(
        self, channel: Channel, fields: dict[str, Any], *, idempotency_scope: str = PYTHON_API_SCOPE
    ) -> str:
        """Validate ``fields`` (snake_case or camelCase) for ``channel`` and enqueue it. From
        synchronous code: the enqueue runs on the process's producer loop, where every
        caller's rows and publishes are batched together. An ``idempotency_key`` is the
        caller's within ``idempotency_scope`` (:mod:`producer.idempotency`): used again for
        the same request it gives the first message's id, for another request it raises
        :class:`~shared.errors.IdempotencyKeyReused`."""
        request = self.validate(channel, fields)
        answer = background().run(self.enqueue(channel, request, idempotency_scope=idempotency_scope))
        return str(answer["id"])

    async def asubmit(
        self, channel: Channel, fields: dict[str, Any], *, idempotency_scope: str = PYTHON_API_SCOPE
    ) -> str:
        """:meth:`submit` for asyncio code, on the running loop."""
        return str((await self.aaccept(channel, fields, idempotency_scope=idempotency_scope))["id"])

    async def aaccept(
        self, channel: Channel, fields: dict[str, Any], *, idempotency_scope: str = PYTHON_API_SCOPE
    ) -> dict[str, Any]:
        """:meth:`asubmit`, answering as the gateway does: ``{"id", "status"}`` (``queued``, or
        ``scheduled`` with its ``sendAt``)."""
        request = await self.avalidate(channel, fields)
        return await self.enqueue(channel, request, idempotency_scope=idempotency_scope)

    def send_many(
        self, items: Sequence[dict[str, Any]], *, idempotency_scope: str = PYTHON_API_SCOPE
    ) -> list[dict[str, Any]]:
        """Send several messages, each a dict with its ``channel`` beside its fields. One
        result per item, in order: ``{"id": …, "status": "queued"}``, or ``{"error": {"code",
        "message", "details"}}`` for an item refused (nothing of it is enqueued); one bad item
        does not stop the others. Idempotency keys as in :meth:`submit`, item by item."""
        checked = [self._check_item(item) for item in items]
        return background().run(self._enqueue_checked(checked, idempotency_scope))

    async def asend_many(
        self, items: Sequence[dict[str, Any]], *, idempotency_scope: str = PYTHON_API_SCOPE
    ) -> list[dict[str, Any]]:
        """:meth:`send_many` for asyncio code, on the running loop."""
        checked = []
        for item in items:
            checked.append(await self._acheck_item(item))
        return await self._enqueue_checked(checked, idempotency_scope)

    def _check_item(self, item: dict[str, Any]) -> tuple[Channel, _Request] | ValidationError:
        try:
            channel, fields = _split_item(item)
            return channel, self.validate(channel, fields)
        except ValidationError as exc:
            return exc

    async def _acheck_item(self, item: dict[str, Any]) -> tuple[Channel, _Request] | ValidationError:
        try:
            channel, fields = _split_item(item)
            return channel, await self.avalidate(channel, fields)
        except ValidationError as exc:
            return exc

    async def _enqueue_checked(
        self, checked: Sequence[tuple[Channel, _Request] | ValidationError], idempotency_scope: str
    ) -> list[dict[str, Any]]:
        valid = [c for c in checked if not isinstance(c, ValidationError)]
        messages = [self.new_message(ch, rq, idempotency_scope) for ch, rq in valid]
        try:
            results = await enqueuer_for(self.settings).accept_many(messages)
        except EnqueueError:
            # Not accepted: the broker did not confirm, and the rows written were removed.
            return [_error_item(c) if isinstance(c, ValidationError) else _UNAVAILABLE for c in checked]
        accepted = iter(zip(messages, results, strict=True))
        return [
            _error_item(c) if isinstance(c, ValidationError) else _result_item(*next(accepted))
            for c in checked
        ]

    async def avalidate(self, channel: Channel, fields: dict[str, Any]) -> _Request:
        """:meth:`validate` without blocking the loop: a templated request reads its template
        from the database, so it is checked on a thread."""
        if "template" in fields or scheduling.needs_database(fields) or _reads_contacts(channel, fields):
            return await asyncio.to_thread(self.validate, channel, fields)
        return self.validate(channel, fields)

    def validate(self, channel: Channel, fields: dict[str, Any]) -> _Request:
        model = TEMPLATED_MODELS[channel] if "template" in fields else REQUEST_MODELS[channel]
        try:
            request = model.model_validate(fields)
        except pydantic.ValidationError as exc:
            raise validation_error(exc) from None
        settings = self.settings
        url = getattr(request, "url", None)
        if channel is Channel.WEBHOOK and isinstance(url, str):  # literal or templated
            try:
                netguard.check_url(url, settings.address_policy)
            except netguard.AddressRefused as exc:
                message = f"URL refused: {exc}"
                raise ValidationError(message, [{"field": "url", "message": message}]) from None
        if isinstance(request, ChatDestination):
            request = self.chat_destination(request)
        if isinstance(request, TemplatedRequest):
            request = self.pin_template(channel, request)
        due = scheduling.due_of(settings, request)
        if due is not None:  # a plain send keeps its request: no copy per message
            request = request.scheduled(due)
        payload = request.payload().to_json()
        validate_shape(payload, "payload")
        size = json_size(payload)
        if size > settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"message is {size} bytes; the limit is {settings.max_payload_bytes} bytes",
                [{"field": "payload", "message": "too large"}],
            )
        return request

    def chat_destination(self, request: D) -> D:
        """Check a chat message's webhook URL like a webhook's, or find the user's own chat
        target; either way the URL is stored sealed from here on."""
        settings = self.settings
        url, channel = request.webhook_url, request.to
        sealed: str | None
        if url is not None:
            try:
                netguard.check_url(url, settings.address_policy)
            except netguard.AddressRefused as exc:
                message = f"webhookUrl refused: {exc}"
                raise ValidationError(message, [{"field": "webhookUrl", "message": message}]) from None
            recipient = chat_targets.recipient(request.service, None, url, request.owner)
            sealed = chat_targets.seal(url, settings)
        elif channel is None:
            user_id = str(request.owner)
            with scope_for(settings.database_url, user_id) as session:
                target = chat_targets.of_contact(contacts.get(session, user_id), request.service)
            if target is None:
                where = "Slack member id or webhook" if request.service == "slack" else "Teams webhook"
                message = f"user {user_id!r} has no {where} in their contacts"
                raise ValidationError(message, [{"field": "userId", "message": message}])
            recipient = chat_targets.recipient(request.service, target.channel, None, user_id)
            channel, sealed = target.channel, target.sealed_url
        else:
            return request
        copy = request.model_copy(update={"to": channel, "webhook_url": sealed})
        copy._recipient = recipient
        return copy

    def pin_template(self, channel: Channel, request: TemplatedRequest) -> TemplatedRequest:
        """Find the template version this message will render (its locale's, else the
        default locale's); an unknown template refuses the message now, not at send time."""
        settings = self.settings
        with session_scope(settings.database_url) as session:
            try:
                locale, version = template_store.resolve(
                    session, request.template, channel.value, request.locale, settings.template_default_locale
                )
            except NotFound as exc:
                raise ValidationError(str(exc), [{"field": "template", "message": str(exc)}]) from None
            ref = template_messages.reference(request.template, locale, version, request.data)
            subject = request.user_id or getattr(request, "to", None) or getattr(request, "url", None)
            ref = template_experiments.enroll(session, ref, channel.value, subject)
        return request.model_copy(update={"template_ref": ref})

    def new_message(
        self, channel: Channel, request: _Request, idempotency_scope: str = PYTHON_API_SCOPE
    ) -> tracking.NewMessage:
        payload = request.payload()
        keyed = request.idempotency_key is not None
        due = request.due
        return tracking.NewMessage(
            channel=channel,
            recipient=_recipient(channel, request, payload),
            payload=Stored(payload, transactional=request.transactional),
            max_attempts=self.settings.retry_policy(channel).max_attempts,
            user_id=request.user_id,
            event_type=request.event_type,
            idempotency_key=request.idempotency_key,
            idempotency_scope=idempotency_scope if keyed else "",
            # Only a keyed request is ever compared: the others skip the hashing.
            request_fingerprint=(
                fingerprint(channel.value, request, exclude=_unfingerprinted(request)) if keyed else None
            ),
            template_key=request.template if isinstance(request, TemplatedRequest) else None,
            template_version=(
                request.template_ref.version
                if isinstance(request, TemplatedRequest) and request.template_ref
                else None
            ),
            # A time already come (within the grace, or no delay) goes at once.
            due_at=due.at if due is not None and due.at > utcnow() else None,
            send_at=due.at if due is not None else None,
            send_at_zone=due.zone if due is not None else None,
        )

    async def enqueue(
        self, channel: Channel, request: _Request, *, idempotency_scope: str = PYTHON_API_SCOPE
    ) -> dict[str, Any]:
        """Record and publish a validated request on the running loop; once accepted, the
        answer :meth:`aaccept` gives."""
        message = self.new_message(channel, request, idempotency_scope)
        message_id, created = await enqueuer_for(self.settings).accept(message)
        if not created:
            log.info("message.idempotent_repeat", message_id=message_id, channel=channel.value)
        return _accepted(message, message_id)

    # -- tracking ------------------------------------------------------------------------

    def get_status(self, message_id: str, *, for_user: str | None = None) -> dict[str, Any]:
        """The message's delivery status as the HTTP API shows it (camelCase keys). Any
        message, or with ``for_user`` only that user's (another's is not found)."""
        with scope_for(self.settings.database_url, for_user) as session:
            row = message_log.get(session, message_id, for_user=for_user)
            if row is None:
                raise NotFound(f"no message with id {message_id}")
            return {**message_log.view(row), "receipts": receipts.of_message(session, message_id)}

    # -- scheduled sends -----------------------------------------------------------------

    def cancel(self, message_id: str, *, for_user: str | None = None) -> dict[str, Any]:
        """Cancel a message that has not started (scheduled, or queued and not yet taken by a
        worker); its status afterwards. :class:`~shared.errors.NotCancelable` once it has
        started or finished, :class:`~shared.errors.NotFound` for an unknown id."""
        return scheduling.cancel(self.settings, message_id, for_user=for_user)

    def reschedule(
        self,
        message_id: str,
        *,
        send_at: Any = None,
        delay_ms: int | None = None,
        for_user: str | None = None,
    ) -> dict[str, Any]:
        """Give a scheduled message another send time: ``send_at=`` (an aware datetime, an
        RFC 3339 string or ``{"local_time": "HH:MM"}``) or ``delay_ms=``; its status
        afterwards. :class:`~shared.errors.NotScheduled` once it is no longer scheduled."""
        fields = {"send_at": send_at, "delay_ms": delay_ms}
        return self.reschedule_to(message_id, {k: v for k, v in fields.items() if v is not None}, for_user)

    def reschedule_to(self, message_id: str, fields: dict[str, Any], for_user: str | None) -> dict[str, Any]:
        """:meth:`reschedule` with the new send time as a request body (``sendAt``/``delayMs``)."""
        try:
            wanted = scheduling.NewSendTime.model_validate(fields)
        except pydantic.ValidationError as exc:
            raise validation_error(exc) from None
        return scheduling.reschedule(self.settings, message_id, wanted, for_user=for_user)


def _unfingerprinted(request: _Request) -> frozenset[str]:
    unset = {name for name in UNFINGERPRINTED_UNLESS_SET if not getattr(request, name)}
    return UNFINGERPRINTED | unset


def _split_item(item: Any) -> tuple[Channel, dict[str, Any]]:
    """An item of a batch: its channel, and the rest as the channel's fields."""
    if not isinstance(item, dict):
        raise ValidationError("each message must be an object", [{"field": None, "message": "not an object"}])
    fields = dict(item)
    raw = fields.pop("channel", None)
    if not isinstance(raw, str):
        message = "each message needs its channel (email, sms, webhook or in-app)"
        raise ValidationError(message, [{"field": "channel", "message": message}])
    try:
        return Channel.parse(raw), fields
    except ValueError as exc:
        raise ValidationError(str(exc), [{"field": "channel", "message": str(exc)}]) from None


#: An item the broker did not accept (the gateway's 503 for a single send).
_UNAVAILABLE = {
    "error": {
        "code": "broker_unavailable",
        "message": "the message was not accepted; retry later",
        "details": [],
    }
}


def _accepted(message: tracking.NewMessage, message_id: str) -> dict[str, Any]:
    """The answer to an accepted send: queued, or scheduled for its ``sendAt``."""
    answer: dict[str, Any] = {"id": message_id, "status": message.status.value}
    if message.status is Status.SCHEDULED and message.send_at is not None:
        answer["sendAt"] = message.send_at.isoformat()
        if message.send_at_zone is not None:
            answer["timezone"] = message.send_at_zone
    return answer


def _result_item(
    message: tracking.NewMessage, result: tuple[str, bool] | IdempotencyKeyReused
) -> dict[str, Any]:
    return _error_item(result) if isinstance(result, IdempotencyKeyReused) else _accepted(message, result[0])


def _error_item(exc: ValidationError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}


#: The model a literal (not templated) request of each channel is validated with.
REQUEST_MODELS: dict[Channel, type[_Request]] = {
    Channel.EMAIL: EmailRequest,
    Channel.SMS: SmsRequest,
    Channel.WEBHOOK: WebhookRequest,
    Channel.IN_APP: InAppRequest,
    Channel.PUSH: PushRequest,
    Channel.CHAT: ChatRequest,
}


def _reads_contacts(channel: Channel, fields: dict[str, Any]) -> bool:
    """A chat message with only a user to go by: their contacts are read."""
    return channel is Channel.CHAT and not (
        fields.get("to") or fields.get("webhookUrl") or fields.get("webhook_url")
    )


def _recipient(channel: Channel, request: _Request, payload: Payload) -> str:
    if channel in (Channel.IN_APP, Channel.PUSH):
        return str(request.user_id)
    if isinstance(request, ChatDestination):
        return request._recipient or chat_targets.recipient(request.service, request.to, None, request.owner)
    address = (
        payload.url
        if isinstance(payload, WebhookPayload | Templated) and channel is Channel.WEBHOOK
        else None
    )
    if address is None and isinstance(payload, EmailPayload | SmsPayload | Templated):
        address = payload.to
    if not address:
        raise ValidationError(f"a {channel.value} message needs a recipient")
    return address
