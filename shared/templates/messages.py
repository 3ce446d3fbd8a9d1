"""Turning a templated message into the concrete payload its provider sends.

A message sent with ``template=…`` is stored as a :class:`~shared.payloads.Templated`
payload: a :class:`~shared.payloads.TemplateRef` pinned at enqueue time beside its
recipient; the delivery pipeline's render stage calls :func:`render_payload` just before the
provider, so the provider sees the same payload as for a message with literal content.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.channels import Channel
from shared.errors import RenderError
from shared.messages import (
    CHAT_TEXT_MAX_CHARS,
    EMAIL_SUBJECT_MAX_CHARS,
    IN_APP_MESSAGE_MAX_CHARS,
    IN_APP_TITLE_MAX_CHARS,
    PUSH_BODY_MAX_CHARS,
    PUSH_TITLE_MAX_CHARS,
    SMS_BODY_MAX_CHARS,
    fits_a_header,
)
from shared.payloads import (
    ChatPayload,
    Content,
    EmailPayload,
    InAppPayload,
    PushPayload,
    SmsPayload,
    Templated,
    TemplateRef,
    WebhookPayload,
)
from shared.templates import engine, experiments, store
from shared.templates.budget import RenderLimits


def reference(key: str, locale: str, version: int, data: dict[str, Any]) -> TemplateRef:
    return TemplateRef(key=key, locale=locale, version=version, data=data)


def _text(rendered: dict[str, Any], part: str, limit: int, *, single_line: bool = False) -> str:
    value = str(rendered.get(part) or "").strip()
    if not value:
        raise RenderError(f"the template's {part!r} rendered empty")
    if len(value) > limit:
        raise RenderError(f"the template's {part!r} rendered {len(value)} characters; the limit is {limit}")
    if single_line and not fits_a_header(value):
        raise RenderError(f"the template's {part!r} rendered a line break or a control character")
    return value


def _address(value: str | None, what: str) -> str:
    if not value:
        raise RenderError(f"the templated message has no {what}")
    return value


def render_payload(
    session: Session,
    channel: Channel,
    message: Templated,
    *,
    strict: bool,
    limits: RenderLimits | None = None,
) -> Content:
    """The provider payload for a templated message. Raises RenderError (the message fails)."""
    ref = message.template
    compiled = experiments.load(session, ref, channel.value)
    partials = store.current_partials(session)
    rendered = engine.render(compiled, ref.data, strict=strict, partials=partials, limits=limits)
    if channel is Channel.EMAIL:
        text = str(rendered.get("text") or "").strip() or None
        html = str(rendered.get("html") or "").strip() or None
        if not (text or html):
            raise RenderError("the template's text and html both rendered empty")
        subject = _text(rendered, "subject", EMAIL_SUBJECT_MAX_CHARS, single_line=True)
        return EmailPayload(
            to=_address(message.to, "address"),
            subject=subject,
            text=text,
            html=html,
            tracking=compiled.tracking,
        )
    if channel is Channel.SMS:
        return SmsPayload(
            to=_address(message.to, "phone number"), message=_text(rendered, "sms", SMS_BODY_MAX_CHARS)
        )
    if channel is Channel.IN_APP:
        return InAppPayload(
            title=_text(rendered, "title", IN_APP_TITLE_MAX_CHARS, single_line=True),
            message=_text(rendered, "message", IN_APP_MESSAGE_MAX_CHARS),
            type=message.type or "info",
            action_url=str(rendered.get("actionUrl") or "").strip() or None,
            data=message.data or {},
        )
    if channel is Channel.PUSH:
        options = message.options or {}
        return PushPayload(
            title=_text(rendered, "title", PUSH_TITLE_MAX_CHARS, single_line=True),
            body=_text(rendered, "message", PUSH_BODY_MAX_CHARS),
            url=str(rendered.get("actionUrl") or "").strip() or None,
            data={str(k): str(v) for k, v in (message.data or {}).items()},
            icon=options.get("icon"),
            ttl=options.get("ttl"),
            urgency=options.get("urgency") or "normal",
            topic=options.get("topic"),
        )
    if channel is Channel.CHAT:
        extra = rendered.get("payload") or {}
        return ChatPayload(
            service=_address(message.service, "chat service"),
            text=_text(rendered, "text", CHAT_TEXT_MAX_CHARS),
            channel=message.to,
            webhook_url=message.url,
            blocks=extra.get("blocks"),
            card=extra.get("card"),
        )
    return WebhookPayload(url=_address(message.url, "URL"), body=rendered.get("payload"))


def view(row: Any) -> dict[str, Any]:
    """A template version as the API shows it."""
    source = store.source_of(row)
    body: dict[str, Any] = {
        "key": row.key,
        "channel": row.channel,
        "locale": row.locale,
        "version": row.version,
        "current": bool(row.is_current),
        "deleted": row.deleted_at is not None,
        "createdAt": row.created_at.isoformat(),
        "sampleData": row.sample_data,
    }
    for spec in engine.CHANNEL_PARTS.get(row.channel, ()):
        body[spec.name] = source.parts.get(spec.name)
    if row.channel in ("webhook", "chat"):
        body["payload"] = source.payload
    if row.channel == "email":
        body["trackOpens"] = "opens" in source.tracking
        body["trackClicks"] = "clicks" in source.tracking
    return body
