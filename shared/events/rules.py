"""Notification rules (``notification_rules``): which events send what, on which channels.

A rule names an event type, optional conditions on the event, the channels to send on, the
template to render (one per channel, by key), a priority (higher first), ``critical``
(bypasses the user's opt-outs and quiet hours, e.g. security alerts), ``transactional`` (its
emails are never tracked, e.g. receipts) and a delay.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import chat_targets
from shared.channels import Channel
from shared.db import keyset
from shared.db.models import NotificationRule, utcnow
from shared.errors import NotFound, ValidationError
from shared.events import conditions as conditions_module
from shared.events import escalation
from shared.events.digests import DigestInput, ThrottleInput
from shared.messages import SLACK_CHANNEL_PATTERN, check_http_url
from shared.templates import store as template_store

#: The longest delay a rule may ask for: 30 days, in milliseconds.
MAX_RULE_DELAY_MS = 30 * 24 * 3_600_000
#: Channels a rule sends on. Events reach webhooks through webhook configurations instead.
RULE_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.IN_APP, Channel.PUSH, Channel.CHAT)


class RuleChat(BaseModel):
    """Where a rule's chat messages go: a Slack channel (the bot), or a webhook URL (stored
    sealed, shown masked); without one, each user's own chat contacts on ``service``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    service: Literal["slack", "teams"] = "slack"
    channel: str | None = Field(default=None, pattern=SLACK_CHANNEL_PATTERN)
    webhook_url: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or value.endswith(chat_targets.MASK_SUFFIX):
            return value  # the masked form keeps what is stored
        return check_http_url(value)

    @model_validator(mode="after")
    def _one(self) -> RuleChat:
        if self.channel is not None and (self.service != "slack" or self.webhook_url is not None):
            raise ValueError("channel names a Slack channel: give it alone, with service slack")
        return self


class RuleInput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=255)
    channels: list[str] = Field(min_length=1)
    template_key: str = Field(pattern=template_store.KEY_PATTERN)
    conditions: list[Any] = Field(default_factory=list, max_length=conditions_module.MAX_CONDITIONS)
    priority: int = 0
    critical: bool = False
    transactional: StrictBool = Field(
        default=False,
        description="Its emails are never tracked (no pixel, no click redirect), whatever the template asks.",
    )
    delay_ms: int = Field(default=0, ge=0, le=MAX_RULE_DELAY_MS)
    steps: list[escalation.Step] | None = Field(
        default=None,
        description="Escalation: the first step at once, each later one `after` it if its `if` still "
        "holds (`notRead`, `notDelivered`, `failed`); the channels follow from the steps.",
    )
    active: bool = True
    digest: DigestInput | None = Field(default=None, description="Fold events into one message per window")
    throttle: ThrottleInput | None = Field(default=None, description="At most N messages per user per period")
    chat: RuleChat | None = Field(
        default=None, description="Where chat messages go (else each user's contacts)"
    )

    @field_serializer("digest", "throttle", "chat")
    def _stored(self, value: BaseModel | None) -> dict[str, Any] | None:
        return value.model_dump(by_alias=True, exclude_none=True) if value is not None else None

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        parsed = []
        for raw in value:
            channel = Channel.parse(raw)
            if channel not in RULE_CHANNELS:
                raise ValueError(
                    f"rules send on {', '.join(c.value for c in RULE_CHANNELS)}; events reach webhooks "
                    "through webhook configurations"
                )
            parsed.append(channel.value)
        return list(dict.fromkeys(parsed))

    @model_validator(mode="before")
    @classmethod
    def _channels_of_steps(cls, data: Any) -> Any:
        """A rule with steps sends on the steps' channels: ``channels`` may be left out."""
        steps = data.get("steps") if isinstance(data, dict) else None
        if isinstance(steps, list) and "channels" not in data:
            # Only the channels a rule sends on: a wrong one is refused once, at its step.
            channels = [s.get("channel") for s in steps if isinstance(s, dict)]
            return {**data, "channels": [c for c in channels if _sends_on(c)]}
        return data

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[escalation.Step] | None) -> list[escalation.Step] | None:
        return None if value is None else escalation.check(value, RULE_CHANNELS)

    @model_validator(mode="after")
    def _steps_match_channels(self) -> RuleInput:
        if self.steps is not None and self.channels != [s.channel for s in self.steps]:
            raise ValueError("channels and steps disagree: give steps alone, the channels follow from them")
        if self.steps is not None and self.digest is not None:
            # A digest goes on all the rule's channels at its window's end: nothing to escalate.
            raise ValueError("a rule escalates (steps) or digests (digest), not both")
        return self

    @field_serializer("steps")
    def _stored_steps(self, value: list[escalation.Step] | None) -> list[dict[str, Any]] | None:
        return None if value is None else [s.stored() for s in value]

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, value: list[Any]) -> list[Any]:
        return [conditions_module.parse(c) for c in value]


def _sends_on(channel: object) -> bool:
    try:
        return isinstance(channel, str) and Channel.parse(channel) in RULE_CHANNELS
    except ValueError:
        return False


def _check_templates(session: Session, rule: RuleInput, default_locale: str) -> None:
    for channel in rule.channels:
        try:
            template_store.resolve(session, rule.template_key, channel, None, default_locale)
        except NotFound:
            message = f"no {channel} template {rule.template_key!r} in locale {default_locale!r}"
            raise ValidationError(message, [{"field": "templateKey", "message": message}]) from None


def _stored(rule: RuleInput, current: dict[str, Any] | None, keys: Sequence[str]) -> dict[str, Any]:
    fields = rule.model_dump()
    chat = fields.get("chat")
    if chat and chat.get("webhookUrl"):
        stored = (current or {}).get("webhookUrl")
        chat["webhookUrl"] = chat_targets.seal_or_keep(chat["webhookUrl"], stored, "chat.webhookUrl", keys)
    return fields


def create(
    session: Session, rule: RuleInput, *, default_locale: str, encryption_keys: Sequence[str] = ()
) -> NotificationRule:
    _check_templates(session, rule, default_locale)
    now = utcnow()
    fields = _stored(rule, None, encryption_keys)
    row = NotificationRule(id=str(uuid.uuid4()), created_at=now, updated_at=now, **fields)
    session.add(row)
    session.flush()
    return row


def get(session: Session, rule_id: str, *, for_update: bool = False) -> NotificationRule:
    """The rule; ``for_update`` locks it until the transaction ends (a read-modify-write)."""
    row = session.get(NotificationRule, rule_id, with_for_update=for_update)
    if row is None:
        raise NotFound(f"no rule with id {rule_id}")
    return row


def replace(
    session: Session,
    row: NotificationRule,
    rule: RuleInput,
    *,
    default_locale: str,
    encryption_keys: Sequence[str] = (),
) -> None:
    """Every field of ``row`` (as :func:`get` read it ``for_update``) from ``rule`` (fields it
    left out take their defaults)."""
    _check_templates(session, rule, default_locale)
    for name, value in _stored(rule, row.chat, encryption_keys).items():
        setattr(row, name, value)
    row.updated_at = utcnow()


def delete(session: Session, rule_id: str) -> None:
    session.delete(get(session, rule_id))


#: The order rules are listed in: oldest first, by columns no update changes.
LISTED = keyset.Keyset((NotificationRule.created_at, NotificationRule.id))


def list_page(
    session: Session, after: keyset.Position | None, limit: int
) -> tuple[list[NotificationRule], keyset.Position | None]:
    return keyset.page(session, select(NotificationRule), LISTED, after, limit)


def matching(session: Session, event_type: str) -> list[NotificationRule]:
    """Active rules for ``event_type``, highest priority first (conditions not yet applied)."""
    query = (
        select(NotificationRule)
        .where(NotificationRule.event_type == event_type, NotificationRule.active.is_(True))
        .order_by(NotificationRule.priority.desc(), NotificationRule.created_at)
    )
    return list(session.scalars(query))


def document(row: NotificationRule) -> dict[str, Any]:
    """The rule as the :class:`RuleInput` that would save it as it is (what a PATCH merges into)."""
    shown = {name: value for name, value in view(row).items() if name not in _NOT_INPUT}
    if row.steps:
        del shown["channels"]  # they follow from the steps, so a patch of the steps moves them too
    return shown


#: What :func:`view` shows beyond the fields a caller sets.
_NOT_INPUT = frozenset({"id", "createdAt", "updatedAt"})


def view(row: NotificationRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "eventType": row.event_type,
        "channels": row.channels,
        "templateKey": row.template_key,
        "conditions": row.conditions,
        "priority": row.priority,
        "critical": row.critical,
        "transactional": row.transactional,
        "delayMs": row.delay_ms,
        "steps": row.steps,
        "active": row.active,
        "digest": row.digest,
        "throttle": row.throttle,
        "chat": _chat_view(row.chat),
        "createdAt": row.created_at.isoformat(),
        "updatedAt": row.updated_at.isoformat(),
    }


def _chat_view(chat: dict[str, Any] | None) -> dict[str, Any] | None:
    if not chat or not chat.get("webhookUrl"):
        return chat
    # Masked without opening the seal: the scheme and host are not kept apart, so say only
    # that a URL is stored (giving this back keeps it).
    return {**chat, "webhookUrl": "https://(stored)" + chat_targets.MASK_SUFFIX}
