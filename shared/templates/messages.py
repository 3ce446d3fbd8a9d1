"""Turning a templated message into the concrete payload its provider sends.

A message sent with ``template=…`` is stored with a ``template`` reference in its payload
(``{"key", "locale", "version", "data"}``) beside its recipient; the delivery pipeline's
render stage calls :func:`render_payload` just before the provider, so the provider sees
the same payload shape as for a message with literal content.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.channels import Channel
from shared.errors import RenderError
from shared.messages import (
    EMAIL_SUBJECT_MAX_CHARS,
    IN_APP_MESSAGE_MAX_CHARS,
    IN_APP_TITLE_MAX_CHARS,
    SMS_BODY_MAX_CHARS,
)
from shared.templates import engine, store
from shared.templates.budget import RenderLimits

#: The payload key holding the template reference.
TEMPLATE_FIELD = "template"


def reference(key: str, locale: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "locale": locale, "version": version, "data": data}


def is_templated(payload: dict[str, Any]) -> bool:
    return isinstance(payload.get(TEMPLATE_FIELD), dict)


def _text(rendered: dict[str, Any], part: str, limit: int, *, single_line: bool = False) -> str:
    value = str(rendered.get(part) or "").strip()
    if not value:
        raise RenderError(f"the template's {part!r} rendered empty")
    if len(value) > limit:
        raise RenderError(f"the template's {part!r} rendered {len(value)} characters; the limit is {limit}")
    if single_line and ("\r" in value or "\n" in value):
        raise RenderError(f"the template's {part!r} rendered a line break")
    return value


def render_payload(
    session: Session,
    channel: Channel,
    payload: dict[str, Any],
    *,
    strict: bool,
    limits: RenderLimits | None = None,
) -> dict[str, Any]:
    """The provider payload for a templated message. Raises RenderError (the message fails)."""
    ref = payload[TEMPLATE_FIELD]
    compiled = store.load(session, ref["key"], channel.value, ref["locale"], int(ref["version"]))
    partials = store.current_partials(session)
    rendered = engine.render(compiled, ref.get("data") or {}, strict=strict, partials=partials, limits=limits)
    if channel is Channel.EMAIL:
        text = str(rendered.get("text") or "").strip() or None
        html = str(rendered.get("html") or "").strip() or None
        if not (text or html):
            raise RenderError("the template's text and html both rendered empty")
        subject = _text(rendered, "subject", EMAIL_SUBJECT_MAX_CHARS, single_line=True)
        return {"to": payload["to"], "subject": subject, "text": text, "html": html}
    if channel is Channel.SMS:
        return {"to": payload["to"], "message": _text(rendered, "sms", SMS_BODY_MAX_CHARS)}
    if channel is Channel.IN_APP:
        return {
            "title": _text(rendered, "title", IN_APP_TITLE_MAX_CHARS, single_line=True),
            "message": _text(rendered, "message", IN_APP_MESSAGE_MAX_CHARS),
            "type": payload.get("type") or "info",
            "actionUrl": str(rendered.get("actionUrl") or "").strip() or None,
            "data": payload.get("data") or {},
        }
    return {"url": payload["url"], "payload": rendered.get("payload")}


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
    if row.channel == "webhook":
        body["payload"] = source.payload
    return body
