"""Processing one event: log it, match the rules, create one message per rule and channel.

Runs in the events actor (``workers/events.py``) in one transaction that holds the
``event_logs`` row locked, so two copies of the same event (a redelivery) never process it
side by side; the messages' idempotency keys ``event:<id>:<rule>:<channel>`` make a second
pass create nothing new. The returned ids are published by the caller after the commit,
like any message: the rows are the truth and the broker only carries ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import chat_targets, tracking
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import EventLog, NotificationLog, NotificationRule, UserContact, utcnow
from shared.errors import NotFound
from shared.events import conditions, contacts, digests, escalation, rules
from shared.logging import get_logger
from shared.messages import normalize_email, normalize_phone
from shared.payloads import Stored, Templated, TemplateRef
from shared.templates import experiments
from shared.templates import messages as template_messages
from shared.templates import store as template_store
from shared.webhooks.fanout import fan_out

log = get_logger(__name__)

#: ``event_logs.status`` values.
QUEUED, PROCESSED = "queued", "processed"


@dataclass(frozen=True)
class Result:
    event_id: str
    #: Messages to publish now (after the commit); delayed ones wait for the scheduler.
    publish: list[tuple[Channel, str]]
    duplicate: bool = False


def idempotency_key(event_id: str, rule_id: str, channel: Channel) -> str:
    return f"event:{event_id}:{rule_id}:{channel.value}"


def template_data(event: EventLog) -> dict[str, Any]:
    """What a rule's template renders with: the event's data, plus ``event`` itself and the
    digest fields (``events``, ``count``, ``first``, ``last``) of a digest of this one event."""
    data = dict(event.data or {})
    data.setdefault(
        "event",
        {
            "id": event.id,
            "type": event.event_type,
            "userId": event.user_id,
            "occurredAt": event.created_at.isoformat(),
        },
    )
    # A template written for a digest also renders one event sent at once.
    for name, value in digests.single(event).items():
        data.setdefault(name, value)
    return data


def _recipient(channel: Channel, event: EventLog, contact: UserContact | None) -> str | None:
    """The address to send to, or None. Addresses from the event's data are validated here
    (contacts were validated when stored); ValueError names a malformed one."""
    data = event.data or {}
    if channel is Channel.EMAIL:
        if data.get("email"):
            return normalize_email(str(data["email"]))
        return contact.email if contact else None
    if channel is Channel.SMS:
        if data.get("phone"):
            return normalize_phone(str(data["phone"]))
        return contact.phone if contact else None
    return event.user_id


def _chat_target(rule: NotificationRule, contact: UserContact | None) -> chat_targets.ChatTarget | None:
    """The rule's own chat destination, else the user's on the rule's service (Slack unless
    the rule says Teams), else the user's Teams webhook."""
    own = chat_targets.of_rule(rule.chat)
    if own is not None:
        return own
    service = (rule.chat or {}).get("service")
    for name in [service] if service else ["slack", "teams"]:
        found = chat_targets.of_contact(contact, name)
        if found is not None:
            return found
    return None


def _message(
    session: Session,
    settings: Settings,
    event: EventLog,
    rule: NotificationRule,
    channel: Channel,
    contact: UserContact | None,
    held: digests.Skip | None = None,
    later: escalation.Later | None = None,
) -> tuple[str, bool, bool]:
    """Create the rule's message on ``channel``: ``(id, created, publish_now)``; ``held``
    closes it as skipped at once (the user turned the type off, or a throttle skipped it)."""
    problem: tuple[Status, str, str] | None = (Status.SKIPPED, held.reason, held.code) if held else None
    try:
        recipient = _recipient(channel, event, contact)
    except ValueError as exc:
        recipient, problem = None, (Status.SKIPPED, str(exc), "invalid_recipient")
    given_locale = (event.data or {}).get("locale")
    locale = str(given_locale) if given_locale else (contact.locale if contact else None)
    key = rule.template_key or ""
    found: TemplateRef | None = None
    try:
        found_locale, version = template_store.resolve(
            session, key, channel.value, locale, settings.template_default_locale
        )
        found = template_messages.reference(key, found_locale, version, template_data(event))
        found = experiments.enroll(session, found, channel.value, event.user_id or recipient)
    except NotFound as exc:
        problem = problem or (Status.FAILED, str(exc), "template_not_found")
    # Without a version found the message is closed at once (template_not_found); its
    # reference then records what was asked for, with version 0.
    ref = found or template_messages.reference(
        key, locale or settings.template_default_locale, 0, template_data(event)
    )
    chat = _chat_target(rule, contact) if channel is Channel.CHAT else None
    if channel is Channel.CHAT:
        recipient = (
            chat_targets.recipient(chat.service, chat.channel, None, event.user_id)
            if chat is not None
            else None
        )
    if recipient is None and problem is None:
        what = {
            Channel.EMAIL: "email address",
            Channel.SMS: "phone number",
            Channel.CHAT: "chat destination (rule chat, or Slack/Teams contacts)",
        }.get(channel, "user")
        problem = (Status.SKIPPED, f"no {what} for user {event.user_id!r}", "no_recipient")
    if channel in (Channel.EMAIL, Channel.SMS):
        content = Templated(template=ref, to=recipient)
    elif channel is Channel.CHAT:
        content = Templated(
            template=ref,
            service=chat.service if chat else "slack",
            to=chat.channel if chat else None,
            url=chat.sealed_url if chat else None,
        )
    elif channel is Channel.PUSH:
        content = Templated(template=ref)
    else:
        content = Templated(template=ref, type="error" if rule.critical else "info")
    due_at = utcnow() + timedelta(milliseconds=rule.delay_ms) if rule.delay_ms and problem is None else None
    if later is not None and problem is None:
        due_at = (due_at or utcnow()) + later.step.delay
    message_id, created = tracking.create(
        session,
        tracking.NewMessage(
            channel=channel,
            recipient=recipient or "",
            payload=Stored(content, critical=rule.critical, transactional=rule.transactional),
            max_attempts=settings.retry_policy(channel).max_attempts,
            user_id=event.user_id,
            event_type=event.event_type,
            event_id=event.id,
            idempotency_key=idempotency_key(event.id, rule.id, channel),
            template_key=rule.template_key,
            template_version=found.version if found else None,
            due_at=due_at,
            send_at=due_at if later is not None else None,
            escalation_of=later.first_id if later is not None else None,
            escalation_if=later.step.if_ if later is not None else None,
            escalation_after=later.previous_id if later is not None else None,
            rule_id=rule.id,
        ),
    )
    if problem is not None and created:
        status, reason, code = problem
        tracking.close_unsendable(session, message_id, status=status, reason=reason, code=code)
        log.warning("event.message_unsendable", event_id=event.id, rule_id=rule.id, reason=problem[1])
        return message_id, created, False
    return message_id, created, due_at is None


def digest_message(
    session: Session,
    settings: Settings,
    digest: EventLog,
    rule: NotificationRule,
    channel: Channel,
    held: digests.Skip | None = None,
) -> tuple[str, bool, bool]:
    """A closed digest's message on ``channel``, like an event's: ``digest`` is an unsaved
    event standing for the digest's events (its last one's id, their data in ``events``);
    ``held`` closes it as skipped (the user turned the type off while the digest was open)."""
    contact = contacts.get(session, digest.user_id) if digest.user_id else None
    return _message(session, settings, digest, rule, channel, contact, held)


def _sends(rule: NotificationRule) -> list[tuple[str, escalation.Step | None]]:
    """The rule's channels in order, each with its escalation step if it is a later one."""
    steps = escalation.load(rule.steps)
    if not steps:
        return [(name, None) for name in rule.channels]
    return [(step.channel, step if number else None) for number, step in enumerate(steps)]


def _waiting(session: Session, event_id: str) -> list[tuple[Channel, str]]:
    rows = session.execute(
        select(NotificationLog.channel, NotificationLog.id).where(
            NotificationLog.event_id == event_id,
            NotificationLog.status == Status.QUEUED.value,
            NotificationLog.due_at.is_(None),
        )
    ).all()
    return [(Channel(r.channel), r.id) for r in rows]


def process(session: Session, settings: Settings, event_id: str) -> Result:
    """Process the event in ``session`` (one transaction; the caller commits, then publishes)."""
    event = session.get(EventLog, event_id, with_for_update=True)
    if event is None:
        log.warning("event.unknown", event_id=event_id)
        return Result(event_id, [], duplicate=True)
    if event.status == PROCESSED:
        # A redelivery. Its messages exist; publish again any still waiting for the broker
        # (the publish may be what failed last time); claims make an extra copy harmless.
        log.info("event.duplicate", event_id=event_id)
        return Result(event_id, _waiting(session, event_id), duplicate=True)
    contact = contacts.get(session, event.user_id) if event.user_id else None
    choices, zone = digests.user_choices(session, event.user_id)
    publish: list[tuple[Channel, str]] = []
    matched = 0
    for rule in rules.matching(session, event.event_type):
        if not conditions.all_hold(rule.conditions or [], event.event_type, event.user_id, event.data or {}):
            continue
        matched += 1
        how = digests.plan(session, rule, event, choices, utcnow())
        if isinstance(how, digests.Digest):
            digests.add(session, rule, event, how.spec, zone, utcnow())
            continue
        held = how if isinstance(how, digests.Skip) else None
        # An escalation's later steps wait on its first message and the one just before.
        first_id: str | None = None
        previous_id: str | None = None
        for name, step in _sends(rule):
            later = None
            if first_id is not None and previous_id is not None and step is not None:
                later = escalation.Later(first_id, previous_id, step)
            message_id, _created, now = _message(
                session, settings, event, rule, Channel(name), contact, held, later=later
            )
            first_id, previous_id = first_id or message_id, message_id
            if now:
                publish.append((Channel(name), message_id))
    webhook_ids = fan_out(
        session,
        settings,
        event_id=event.id,
        event_type=event.event_type,
        data=dict(event.data or {}),
        user_id=event.user_id,
        occurred_at=event.created_at,
    )
    publish.extend((Channel.WEBHOOK, message_id) for message_id in webhook_ids)
    event.status = PROCESSED
    event.matched_rules = matched
    event.processed_at = utcnow()
    if matched == 0:
        log.info("event.no_matching_rules", event_id=event.id, event_type=event.event_type)
    return Result(event_id, publish)


def take_lost(session: Session, *, stale_after: timedelta, limit: int) -> list[str]:
    """Events still queued ``stale_after`` after they were accepted (or last rescued): the
    broker evidently lost them (a crash between the row insert and the publish). Marks them
    rescued now, so each is published again at most once per ``stale_after``."""
    now = utcnow()
    stale = now - stale_after
    ids = list(
        session.scalars(
            select(EventLog.id)
            .where(
                EventLog.status == QUEUED,
                EventLog.created_at < stale,
                (EventLog.rescued_at.is_(None)) | (EventLog.rescued_at < stale),
            )
            .order_by(EventLog.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(update(EventLog).where(EventLog.id.in_(ids)).values(rescued_at=now))
    return ids
