"""What a message carries from the producer to its provider: one typed value per channel.

The producer builds a payload from a validated request (:mod:`shared.messages`) and stores
it as JSON in the message's ``notification_logs.payload``; a worker reads it back with
:func:`load` and hands the typed value down the pipeline, so no stage reads a dict by key.

A message sent with a template carries a :class:`Templated` payload instead: the recipient
and a :class:`TemplateRef` pinned at enqueue time; the worker's render stage turns it into the
channel's concrete payload just before the provider.

The JSON keys are camelCase, as in the HTTP API, and are part of the stored format: rows
written by an earlier version must still load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.channels import Channel


@dataclass(frozen=True, slots=True)
class EmailPayload:
    to: str
    subject: str
    text: str | None = None
    html: str | None = None
    #: From its template, once rendered: ``opens``, ``clicks`` (never stored: a direct send
    #: is not tracked).
    tracking: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"to": self.to, "subject": self.subject, "text": self.text, "html": self.html}


@dataclass(frozen=True, slots=True)
class SmsPayload:
    to: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"to": self.to, "message": self.message}


@dataclass(frozen=True, slots=True)
class WebhookPayload:
    url: str
    #: The JSON document posted (an object or an array).
    body: Any
    #: The configured endpoint this message goes to; None for an ad-hoc URL. A configured
    #: endpoint's URL, headers and secrets are read when the message is sent, not stored here.
    configuration_id: str | None = None
    #: Delays before each retry to a configured endpoint (its own schedule at fan-out time).
    retry_schedule_ms: tuple[int, ...] = ()
    #: Messages to an ordered endpoint with the same key arrive one at a time, in order.
    ordering_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "payload": self.body}
        if self.configuration_id is not None:
            out["configurationId"] = self.configuration_id
            out["retryScheduleMs"] = list(self.retry_schedule_ms)
        if self.ordering_key is not None:
            out["orderingKey"] = self.ordering_key
        return out


@dataclass(frozen=True, slots=True)
class InAppPayload:
    title: str
    message: str
    type: str = "info"
    action_url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "message": self.message,
            "type": self.type,
            "actionUrl": self.action_url,
            "data": self.data,
        }


#: RFC 8030 urgencies, least to most; APNs and FCM map them onto their own priorities.
PUSH_URGENCIES = ("very-low", "low", "normal", "high")


@dataclass(frozen=True, slots=True)
class PushPayload:
    """A notification for every device the user registered (browsers, Android, iOS)."""

    title: str
    body: str
    #: Opened when the notification is tapped.
    url: str | None = None
    icon: str | None = None
    #: Passed to the app beside the notification (strings only: FCM's rule).
    data: dict[str, str] = field(default_factory=dict)
    #: Seconds the push service keeps it for a device that is offline; None: its default.
    ttl: int | None = None
    urgency: str = "normal"
    #: A newer notification with the same topic replaces one not yet shown.
    topic: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "body": self.body,
            "url": self.url,
            "icon": self.icon,
            "data": self.data,
            "ttl": self.ttl,
            "urgency": self.urgency,
            "topic": self.topic,
        }


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One registered device of a user, as a push provider needs it."""

    id: str
    #: ``web`` (a browser's push subscription), ``fcm`` (Android, or any Firebase app) or ``apns``.
    kind: str
    #: The subscription's endpoint URL (web) or the device token (fcm, apns).
    token: str
    #: Web push only: the browser's P-256 public key and auth secret (base64url).
    p256dh: str | None = None
    auth: str | None = None
    #: The app the token belongs to (the APNs topic: its bundle id).
    app_id: str | None = None
    #: When the device last took a push (kept roughly: see :mod:`workers.push`).
    last_success_at: datetime | None = None


#: The chat tools of the ``chat`` channel.
CHAT_SERVICES = ("slack", "teams")


@dataclass(frozen=True, slots=True)
class ChatPayload:
    """A message to Slack or Microsoft Teams."""

    service: str
    #: The plain text: Slack's notification and fallback text; Teams' card when none is given.
    text: str
    #: Slack: a channel id, or a member id for a direct message (posted with the bot token).
    channel: str | None = None
    #: An incoming webhook (Slack) or Workflows/incoming webhook URL (Teams). Stored sealed
    #: (:mod:`shared.webhooks.secretbox`); the worker opens it just before sending.
    webhook_url: str | None = None
    #: Slack Block Kit blocks.
    blocks: list[Any] | None = None
    #: A Teams Adaptive Card (the card object itself).
    card: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": self.service, "text": self.text}
        for key, value in (
            ("channel", self.channel),
            ("webhookUrl", self.webhook_url),
            ("blocks", self.blocks),
            ("card", self.card),
        ):
            if value is not None:
                out[key] = value
        return out


#: The concrete content of a message on each channel, what its provider sends.
Content = EmailPayload | SmsPayload | WebhookPayload | InAppPayload | PushPayload | ChatPayload


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """The template version a message renders, found when it was enqueued."""

    key: str
    locale: str
    version: int
    data: dict[str, Any]
    #: The experiment the template was under when the message was enqueued, and the variant
    #: its recipient got (:mod:`shared.templates.experiments`).
    experiment: str | None = None
    variant: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"key": self.key, "locale": self.locale, "version": self.version, "data": self.data}
        if self.experiment and self.variant:
            out.update(experiment=self.experiment, variant=self.variant)
        return out


@dataclass(frozen=True, slots=True)
class Templated:
    """A message whose content is rendered from a template at send time. Besides the
    template it keeps what is not part of the template: the address (email, SMS; a chat
    message's Slack channel), the URL (webhook; a chat message's sealed webhook URL), the
    notification's type and data (in-app, push), a push's delivery options (``ttl``,
    ``urgency``, ``topic``, ``icon``) or a chat message's service."""

    template: TemplateRef
    to: str | None = None
    url: str | None = None
    type: str | None = None
    data: dict[str, Any] | None = None
    service: str | None = None
    options: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"template": self.template.to_json()}
        for key in ("to", "url", "type", "data", "service", "options"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


Payload = Content | Templated


@dataclass(frozen=True, slots=True)
class Stored:
    """A message's payload as stored: its content (or template), whether it comes from a
    ``critical`` rule (it then bypasses opt-outs, quiet hours and recipient limits) and
    whether it was sent ``transactional`` (a receipt, a password reset: never tracked)."""

    payload: Payload
    critical: bool = False
    transactional: bool = False

    def to_json(self) -> dict[str, Any]:
        out = self.payload.to_json()
        if self.critical:
            out["critical"] = True
        if self.transactional:
            out["transactional"] = True
        return out


class PayloadError(ValueError):
    """A stored payload that does not have its channel's shape."""


def _optional(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"payload field {key!r} must be a string")
    return value


def _required(raw: dict[str, Any], key: str) -> str:
    value = _optional(raw, key)
    if value is None:
        raise PayloadError(f"payload has no {key!r}")
    return value


def _text_or_none(value: Any) -> str | None:
    return str(value) if value else None


def _template(raw: dict[str, Any]) -> TemplateRef:
    ref = raw["template"]
    try:
        return TemplateRef(
            key=str(ref["key"]),
            locale=str(ref["locale"]),
            version=int(ref["version"]),
            data=ref.get("data") or {},
            experiment=_text_or_none(ref.get("experiment")),
            variant=_text_or_none(ref.get("variant")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"payload has a malformed template reference: {exc}") from None


def load(channel: Channel, raw: dict[str, Any]) -> Stored:
    """The typed payload of a stored message. Raises :class:`PayloadError` for a payload that
    does not fit its channel (a message that can never be sent)."""
    if not isinstance(raw, dict):
        raise PayloadError("payload must be an object")
    critical = bool(raw.get("critical"))
    transactional = bool(raw.get("transactional"))
    if isinstance(raw.get("template"), dict):
        data = raw.get("data")
        return Stored(
            Templated(
                template=_template(raw),
                to=_optional(raw, "to"),
                url=_optional(raw, "url"),
                type=_optional(raw, "type"),
                data=data if isinstance(data, dict) else None,
                service=_optional(raw, "service"),
                options=options if isinstance(options := raw.get("options"), dict) else None,
            ),
            critical,
            transactional,
        )
    return Stored(_content(channel, raw), critical, transactional)


def _content(channel: Channel, raw: dict[str, Any]) -> Content:
    if channel is Channel.EMAIL:
        text, html = _optional(raw, "text"), _optional(raw, "html")
        if not (text or html):
            raise PayloadError("email payload has neither text nor html")
        return EmailPayload(
            to=_required(raw, "to"), subject=_optional(raw, "subject") or "", text=text, html=html
        )
    if channel is Channel.SMS:
        return SmsPayload(to=_required(raw, "to"), message=_required(raw, "message"))
    if channel is Channel.WEBHOOK:
        schedule = raw.get("retryScheduleMs") or ()
        if not isinstance(schedule, list | tuple) or not all(isinstance(d, int) for d in schedule):
            raise PayloadError("payload field 'retryScheduleMs' must be a list of milliseconds")
        return WebhookPayload(
            url=_required(raw, "url"),
            body=raw.get("payload"),
            configuration_id=_optional(raw, "configurationId"),
            retry_schedule_ms=tuple(schedule),
            ordering_key=_optional(raw, "orderingKey"),
        )
    if channel is Channel.PUSH:
        return _push(raw)
    if channel is Channel.CHAT:
        return _chat(raw)
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PayloadError("payload field 'data' must be an object")
    return InAppPayload(
        title=_required(raw, "title"),
        message=_required(raw, "message"),
        type=_optional(raw, "type") or "info",
        action_url=_optional(raw, "actionUrl"),
        data=data,
    )


def _push(raw: dict[str, Any]) -> PushPayload:
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise PayloadError("payload field 'data' must be an object")
    ttl = raw.get("ttl")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0):
        raise PayloadError("payload field 'ttl' must be a number of seconds")
    urgency = _optional(raw, "urgency") or "normal"
    if urgency not in PUSH_URGENCIES:
        raise PayloadError(f"payload field 'urgency' must be one of {', '.join(PUSH_URGENCIES)}")
    return PushPayload(
        title=_required(raw, "title"),
        body=_optional(raw, "body") or "",
        url=_optional(raw, "url"),
        icon=_optional(raw, "icon"),
        data={str(k): str(v) for k, v in data.items()},
        ttl=ttl,
        urgency=urgency,
        topic=_optional(raw, "topic"),
    )


def _chat(raw: dict[str, Any]) -> ChatPayload:
    service = _required(raw, "service")
    if service not in CHAT_SERVICES:
        raise PayloadError(f"payload field 'service' must be one of {', '.join(CHAT_SERVICES)}")
    blocks, card = raw.get("blocks"), raw.get("card")
    if blocks is not None and not isinstance(blocks, list):
        raise PayloadError("payload field 'blocks' must be a list")
    if card is not None and not isinstance(card, dict):
        raise PayloadError("payload field 'card' must be an object")
    return ChatPayload(
        service=service,
        text=_optional(raw, "text") or "",
        channel=_optional(raw, "channel"),
        webhook_url=_optional(raw, "webhookUrl"),
        blocks=blocks,
        card=card,
    )
