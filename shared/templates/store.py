"""Templates in ``message_templates``: saving a version (after every check), finding the one a
message uses, and loading it back compiled.

A row is one version of one ``(key, channel, locale)``; saving adds a version and marks it
current, so messages already queued still render the version they were enqueued with
(``notification_logs.template_version``). Partials are stored under the channel ``partial``
and are always used at their current version.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from shared.db import keyset
from shared.db.models import MessageTemplate, utcnow
from shared.errors import NotFound, RenderError, TemplateError, TemplateInUse, TemplateTooLarge
from shared.logging import get_logger
from shared.templates import engine, partials_graph, syntax
from shared.templates.budget import RenderLimits
from shared.templates.engine import PARTIAL, Compiled, TemplateSource
from shared.templates.limits import CompileLimitExceeded

log = get_logger(__name__)

#: How long a process reuses its view of which partial versions are current.
PARTIALS_REFRESH_SECONDS = 5.0

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
LOCALE_PATTERN = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$"
#: The width of the locale columns (BCP 47 advises room for 35 characters).
LOCALE_MAX_CHARS = 35
CHANNELS = ("email", "sms", "in_app", "webhook", "push", "chat", PARTIAL)
#: Channels whose templates may carry a JSON ``payload`` whose strings are templates.
PAYLOAD_CHANNELS = ("webhook", "chat")

#: API part name → column.
PART_COLUMNS = {
    "subject": "subject",
    "text": "text_body",
    "html": "html_body",
    "sms": "sms_body",
    "title": "title",
    "message": "message",
    "actionUrl": "action_url",
}


class TemplateInput(BaseModel):
    """A template as the API and Python callers give it (camelCase or snake_case)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    key: str = Field(pattern=KEY_PATTERN)
    channel: str
    locale: str | None = Field(default=None, pattern=LOCALE_PATTERN, max_length=LOCALE_MAX_CHARS)
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sms: str | None = None
    title: str | None = None
    message: str | None = None
    action_url: str | None = None
    payload: dict[str, Any] | list[Any] | None = None
    sample_data: dict[str, Any] = Field(default_factory=dict)
    #: Email only: a tracking pixel / links through the click redirect (with TRACKING_SECRET).
    track_opens: bool = False
    track_clicks: bool = False

    def parts(self) -> dict[str, str | None]:
        return {name: getattr(self, _attr(name)) for name in PART_COLUMNS}


def _attr(part: str) -> str:
    return "action_url" if part == "actionUrl" else part


def normalize_channel(raw: str) -> str:
    channel = raw.strip().lower().replace("-", "_")
    if channel not in CHANNELS:
        raise TemplateError(
            f"unknown channel {raw!r}",
            [{"field": "channel", "message": f"choose from {', '.join(CHANNELS)}"}],
        )
    return channel


def _refuse(part: str, line: int | None, message: str) -> TemplateError:
    where = f"{part}, line {line}" if line else part
    return TemplateError(f"{where}: {message}", [{"part": part, "line": line, "message": message}])


def _too_large(part: str | None, message: str) -> TemplateTooLarge:
    return TemplateTooLarge(message, [{"part": part, "line": None, "message": message}])


def _check_partials_with(partials: dict[str, Compiled], key: str, compiled: Compiled) -> None:
    """Every process compiles every current partial: together they are weighed as one
    template, and how they include each other is checked as one graph."""
    others = [p.weight for name, p in partials.items() if name != key]
    total = sum(others, compiled.weight)
    try:
        total.refuse_if_over("all current partials together (each compiled for text and for HTML)", "text")
    except CompileLimitExceeded as exc:
        raise _too_large(exc.part, exc.message) from None
    graph = {name: p.partials for name, p in partials.items()}
    graph[key] = compiled.partials
    partials_graph.check_saving(graph, key)


def document(row: MessageTemplate) -> dict[str, Any]:
    """The version as the :class:`TemplateInput` that would save it again (what a PATCH
    merges into)."""
    fields: dict[str, Any] = {
        "key": row.key,
        "channel": row.channel,
        "locale": row.locale,
        "sampleData": row.sample_data or {},
    }
    fields.update({name: getattr(row, column) for name, column in PART_COLUMNS.items()})
    fields["payload"] = None if row.webhook_payload is None else json.loads(row.webhook_payload)
    if row.channel == "email":
        fields.update(trackOpens=bool(row.track_opens), trackClicks=bool(row.track_clicks))
    return {name: value for name, value in fields.items() if value is not None}


def source_of(row: MessageTemplate) -> TemplateSource:
    return TemplateSource(
        key=row.key,
        channel=row.channel,
        locale=row.locale,
        version=row.version,
        parts={name: getattr(row, column) for name, column in PART_COLUMNS.items()},
        payload=engine.payload_source(row.webhook_payload),
        tracking=frozenset(
            name for name, on in (("opens", row.track_opens), ("clicks", row.track_clicks)) if on
        ),
    )


def check(
    session: Session, given: TemplateInput, channel: str, locale: str, limits: RenderLimits | None = None
) -> tuple[Compiled, dict[str, Compiled]]:
    """Refuse a template that could not render: bad syntax, unknown helper or partial, a
    required part missing or rendering empty (or over ``limits``) with the sample data.
    Raises TemplateError; returns the compiled template and the partials it was checked with."""
    allowed = {spec.name for spec in engine.CHANNEL_PARTS[channel]}
    stray = [name for name, text in given.parts().items() if text is not None and name not in allowed]
    if channel not in PAYLOAD_CHANNELS and given.payload is not None:
        stray.append("payload")
    if channel != "email":
        stray += [
            name
            for name, on in (("trackOpens", given.track_opens), ("trackClicks", given.track_clicks))
            if on
        ]
    if stray:
        raise _refuse(stray[0], None, f"a {channel} template has no {stray[0]!r} part")
    partials = current_partials(session, fresh=True)
    known = set(partials) - ({given.key} if channel == PARTIAL else set())
    source = TemplateSource(given.key, channel, locale, 0, given.parts(), given.payload)
    try:
        compiled = engine.compile_source(source, known_partials=known)
    except engine.PartError as exc:
        raise _refuse(exc.part, exc.problem.line, exc.problem.message) from None
    except CompileLimitExceeded as exc:
        raise _too_large(exc.part, exc.message) from None
    if channel == PARTIAL:
        _check_partials_with(partials, given.key, compiled)
    required = [spec.name for spec in engine.CHANNEL_PARTS[channel] if spec.required]
    for name in required:
        if not (given.parts().get(name) or "").strip():
            raise _refuse(name, None, f"a {channel} template needs a {name!r} part")
    if channel == "email" and not (given.text or given.html):
        raise _refuse("text", None, "an email template needs a 'text' or an 'html' part (or both)")
    if channel == "webhook" and not given.payload:
        raise _refuse("payload", None, "a webhook template needs a non-empty 'payload'")
    if channel == "chat" and given.payload is not None:
        _check_chat_payload(given.payload)
    try:
        rendered = engine.render(compiled, given.sample_data, strict=False, partials=partials, limits=limits)
    except RenderError as exc:
        raise _refuse("sampleData", None, str(exc)) from None
    if channel == "email":
        required.append("text" if given.text else "html")
    for name in required:
        if not str(rendered.get(name, "")).strip():
            raise _refuse(name, None, f"{name!r} renders empty with the sample data")
    return compiled, partials


def _check_chat_payload(payload: Any) -> None:
    if not isinstance(payload, dict) or not set(payload) <= {"blocks", "card"}:
        raise _refuse("payload", None, "a chat template's payload is an object of 'blocks' and/or 'card'")
    if not isinstance(payload.get("blocks", []), list):
        raise _refuse("payload", None, "'blocks' is a list of Slack Block Kit blocks")
    card = payload.get("card")
    if card is not None and (not isinstance(card, dict) or card.get("type") != "AdaptiveCard"):
        raise _refuse("payload", None, "'card' is an Adaptive Card: an object whose type is AdaptiveCard")


def render_draft(
    session: Session,
    given: TemplateInput,
    data: dict[str, Any] | None,
    *,
    default_locale: str,
    strict: bool,
    limits: RenderLimits | None = None,
) -> dict[str, Any]:
    """Check ``given`` as :func:`save` would, without saving it, and render it with ``data``
    (its sample data when None): a preview of a template being written."""
    channel = normalize_channel(given.channel)
    compiled, partials = check(session, given, channel, given.locale or default_locale, limits)
    if data is None:
        data = given.sample_data
    return engine.render(compiled, data, strict=strict, partials=partials, limits=limits)


def save(
    session: Session, given: TemplateInput, *, default_locale: str, limits: RenderLimits | None = None
) -> MessageTemplate:
    """Check and store ``given`` as the next version of its key, channel and locale."""
    channel = normalize_channel(given.channel)
    locale = given.locale or default_locale
    check(session, given, channel, locale, limits)
    scope = (
        MessageTemplate.key == given.key,
        MessageTemplate.channel == channel,
        MessageTemplate.locale == locale,
    )
    # Serialize concurrent edits of one template: the unique (key, channel, locale, version)
    # makes the loser fail instead of overwriting.
    latest = session.scalar(select(func.max(MessageTemplate.version)).where(*scope)) or 0
    session.execute(update(MessageTemplate).where(*scope).values(is_current=False))
    row = MessageTemplate(
        key=given.key,
        channel=channel,
        locale=locale,
        version=latest + 1,
        webhook_payload=json.dumps(given.payload) if given.payload is not None else None,
        sample_data=given.sample_data,
        track_opens=given.track_opens,
        track_clicks=given.track_clicks,
        is_current=True,
        created_at=utcnow(),
        **{column: getattr(given, _attr(name)) for name, column in PART_COLUMNS.items()},
    )
    session.add(row)
    session.flush()
    if channel == PARTIAL:
        _forget_partials()
    return row


#: The order templates are listed in. One version per key, channel and locale is current, so
#: the three never tie among current versions; a version id would not do: saving a template
#: while a client pages would show it again under its new version's id.
LISTED = keyset.Keyset((MessageTemplate.key, MessageTemplate.channel, MessageTemplate.locale))


def _current_query(key: str, channel: str | None, locale: str | None) -> Select[MessageTemplate]:
    query = select(MessageTemplate).where(
        MessageTemplate.key == key, MessageTemplate.is_current.is_(True), MessageTemplate.deleted_at.is_(None)
    )
    if channel is not None:
        query = query.where(MessageTemplate.channel == normalize_channel(channel))
    if locale is not None:
        query = query.where(MessageTemplate.locale == locale)
    return query


def current(session: Session, key: str, channel: str | None = None, locale: str | None = None) -> list[Any]:
    query = _current_query(key, channel, locale)
    return list(session.scalars(query.order_by(MessageTemplate.channel, MessageTemplate.locale)))


def current_page(
    session: Session,
    key: str,
    channel: str | None,
    locale: str | None,
    after: keyset.Position | None,
    limit: int,
) -> tuple[list[MessageTemplate], keyset.Position | None]:
    """A page of ``key``'s current versions (each channel and locale), in :data:`LISTED` order."""
    return keyset.page(session, _current_query(key, channel, locale), LISTED, after, limit)


def by_id(session: Session, row_id: int) -> MessageTemplate:
    row = session.get(MessageTemplate, row_id)
    if row is None:
        raise NotFound(f"no template version {row_id}")
    return row


def version(session: Session, key: str, channel: str, locale: str, number: int) -> MessageTemplate:
    row = session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.key == key,
            MessageTemplate.channel == channel,
            MessageTemplate.locale == locale,
            MessageTemplate.version == number,
        )
    )
    if row is None:
        raise NotFound(f"template {key!r} has no {channel} version {number} in locale {locale!r}")
    return row


_EVERY_CURRENT = select(MessageTemplate).where(
    MessageTemplate.is_current.is_(True), MessageTemplate.deleted_at.is_(None)
)


def list_current(session: Session) -> list[MessageTemplate]:
    return list(session.scalars(_EVERY_CURRENT.order_by(*LISTED.order_by())))


def list_current_page(
    session: Session, after: keyset.Position | None, limit: int
) -> tuple[list[MessageTemplate], keyset.Position | None]:
    """A page of every template's current versions, in :data:`LISTED` order."""
    return keyset.page(session, _EVERY_CURRENT, LISTED, after, limit)


def delete(session: Session, key: str, channel: str | None = None, locale: str | None = None) -> int:
    """Retire the template (its versions stay readable for messages already queued)."""
    rows = current(session, key, channel, locale)
    if not rows:
        raise NotFound(f"no template {key!r}")
    if any(row.channel == PARTIAL for row in rows):
        _refuse_if_included(session, key, retiring={row.id for row in rows})
    now = utcnow()
    for row in rows:
        row.deleted_at = now
        row.is_current = False
        if row.channel == PARTIAL:
            _forget_partials()
    return len(rows)


def _refuse_if_included(session: Session, partial: str, retiring: set[int]) -> None:
    """Partials are used at their current version: retiring one that current templates
    still include would fail their messages at send time."""
    includers = []
    for row in list_current(session):
        if row.id in retiring:
            continue
        try:
            used = engine.partials_used(source_of(row))
        except syntax.TemplateSyntaxError:
            continue  # a version saved before a whitelist change; it cannot render anyway
        if partial in used:
            includers.append(
                f"partial {row.key!r}"
                if row.channel == PARTIAL
                else f"{row.channel} template {row.key!r} ({row.locale})"
            )
    if includers:
        message = (
            f"partial {partial!r} is still included by {', '.join(includers)}; change or retire those first"
        )
        raise TemplateInUse(message, [{"part": None, "line": None, "message": message}])


def resolve(
    session: Session, key: str, channel: str, locale: str | None, default_locale: str
) -> tuple[str, int]:
    """The ``(locale, version)`` a new message uses: its locale's current version, else the
    default locale's. Raises NotFound when neither exists."""
    for candidate in dict.fromkeys(c for c in (locale, default_locale) if c):
        found = session.execute(
            select(MessageTemplate.locale, MessageTemplate.version).where(
                MessageTemplate.key == key,
                MessageTemplate.channel == channel,
                MessageTemplate.locale == candidate,
                MessageTemplate.is_current.is_(True),
                MessageTemplate.deleted_at.is_(None),
            )
        ).one_or_none()
        if found is not None:
            return found.locale, found.version
    raise NotFound(f"no {channel} template {key!r} (locale {locale or default_locale!r})")


def load(session: Session, key: str, channel: str, locale: str, number: int) -> Compiled:
    """The compiled version: read from the database and compiled on first use only
    (versions are immutable). Raises RenderError for a version that cannot be compiled."""
    hit = engine.lookup((key, channel, locale, number))
    if hit is not None:
        return hit
    return engine.cached(source_of(version(session, key, channel, locale, number)))


_partials: tuple[float, dict[str, Compiled]] | None = None
_partials_lock = threading.Lock()


def forget_cache() -> None:
    """Drop every cached template. Versions are immutable, so only a database emptied under
    a running process (tests) needs this."""
    engine.forget_cache()
    _forget_partials()


def _forget_partials() -> None:
    global _partials
    with _partials_lock:
        _partials = None


def current_partials(session: Session, *, fresh: bool = False) -> dict[str, Compiled]:
    """Every current partial, compiled; refreshed at most every PARTIALS_REFRESH_SECONDS."""
    global _partials
    with _partials_lock:
        snapshot = _partials
    if not fresh and snapshot is not None and time.monotonic() - snapshot[0] < PARTIALS_REFRESH_SECONDS:
        return snapshot[1]
    rows = session.scalars(
        select(MessageTemplate).where(
            MessageTemplate.channel == PARTIAL,
            MessageTemplate.is_current.is_(True),
            MessageTemplate.deleted_at.is_(None),
        )
    )
    compiled: dict[str, Compiled] = {}
    for row in rows:
        try:
            compiled[row.key] = engine.cached(source_of(row))
        except RenderError as exc:
            # One partial saved before a limit must not fail every message: only those
            # including it fail ("could not be found"), and the reason is logged here.
            log.warning("templates.partial_unusable", partial=row.key, error=str(exc))
    with _partials_lock:
        _partials = (time.monotonic(), compiled)
    return compiled
