"""Installing the starter set (:mod:`producer.starter.content`) through the same checks as
``/api/templates`` and ``/api/rules``.

Installing fills gaps and never overwrites: a template or rule the operator already has is
left alone and reported as kept (edited, retired, or an event the operator already wrote
rules for); one equal to the starter's is reported unchanged. Running it twice therefore
changes nothing. A starter rule the operator deletes comes back on the next install unless
the event has rules of the operator's own; to silence one, set it inactive instead.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from producer.starter import content
from shared.config import Settings
from shared.db.models import MessageTemplate, NotificationRule
from shared.db.session import session_scope
from shared.errors import NotFound, ValidationError
from shared.events import rules
from shared.events.rules import RuleInput
from shared.logging import get_logger
from shared.templates import store
from shared.templates.budget import RenderLimits
from shared.templates.store import TemplateInput

log = get_logger(__name__)

Outcome = Literal["added", "unchanged", "kept"]
#: Why a template is kept although it has no current version.
RETIRED = "retired by an operator"


@dataclass(frozen=True)
class Item:
    """What installing did (or, in a dry run, would do) with one template or rule."""

    kind: Literal["template", "rule"]
    #: ``<key> (<channel>)`` for a template, the rule's name for a rule.
    name: str
    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True)
class StarterReport:
    """Every template and rule of the starter set, in order, with what became of it."""

    items: tuple[Item, ...]
    dry_run: bool

    def having(self, outcome: Outcome) -> list[Item]:
        return [item for item in self.items if item.outcome == outcome]

    def counts(self) -> dict[str, int]:
        return {outcome: len(self.having(outcome)) for outcome in ("added", "unchanged", "kept")}


def install_starter(settings: Settings, *, dry_run: bool = False) -> StarterReport:
    """Add what the database lacks of the starter set, in one transaction; with ``dry_run``,
    only report what would be added."""
    items: list[Item] = []
    with session_scope(settings.database_url) as session:
        existing_rules = _rules_by_event_type(session)
        for event in content.load():
            found = [_template(session, settings, given, dry_run=dry_run) for given in event.templates]
            items.extend(found)
            items.append(_rule(session, settings, event.rule, found, existing_rules, dry_run=dry_run))
    report = StarterReport(tuple(items), dry_run)
    if not dry_run:
        log.info("starter.installed", **report.counts())
    return report


def install_on_embedded_database(settings: Settings) -> StarterReport | None:
    """The starter set on the embedded SQLite database, so events produce messages out of the
    box; never on PostgreSQL, where operators opt in with ``kai-messaging starter``. None when
    nothing was installed: not SQLite, or the set was refused (logged; the run goes on)."""
    if not settings.database_url.startswith("sqlite"):
        return None
    try:
        return install_starter(settings)
    except ValidationError as exc:
        # A convenience of the dev mode must not keep the service from starting (e.g. render
        # limits set below what the starter copy needs); `kai-messaging starter` says the same.
        log.warning("starter.not_installed", error=str(exc))
        return None


def _template(session: Session, settings: Settings, given: TemplateInput, *, dry_run: bool) -> Item:
    locale = settings.template_default_locale
    name = f"{given.key} ({given.channel})"
    rows = store.current(session, given.key, given.channel, locale)
    if rows:
        if _same_template(rows[0], given):
            return Item("template", name, "unchanged")
        return Item("template", name, "kept", f"version {rows[0].version} differs from the starter's")
    if _ever_saved(session, given, locale):
        return Item("template", name, "kept", RETIRED)
    if not dry_run:
        store.save(session, given, default_locale=locale, limits=RenderLimits.of(settings))
    return Item("template", name, "added")


def _same_template(row: MessageTemplate, given: TemplateInput) -> bool:
    stored = store.source_of(row).parts
    return all((stored.get(part) or None) == (text or None) for part, text in given.parts().items())


def _ever_saved(session: Session, given: TemplateInput, locale: str) -> bool:
    try:
        store.version(session, given.key, store.normalize_channel(given.channel), locale, 1)
    except NotFound:
        return False
    return True


def _rules_by_event_type(session: Session) -> dict[str, list[NotificationRule]]:
    """Every rule, inactive ones included: a starter rule the operator switched off is kept off."""
    found: dict[str, list[NotificationRule]] = defaultdict(list)
    for row in session.scalars(select(NotificationRule).order_by(NotificationRule.created_at)):
        found[row.event_type].append(row)
    return found


def _rule(
    session: Session,
    settings: Settings,
    wanted: RuleInput,
    templates: list[Item],
    existing: dict[str, list[NotificationRule]],
    *,
    dry_run: bool,
) -> Item:
    present = existing.get(wanted.event_type, [])
    same_name = [row for row in present if row.name == wanted.name]
    if same_name:
        if _same_rule(same_name[0], wanted):
            return Item("rule", wanted.name, "unchanged")
        return Item("rule", wanted.name, "kept", "edited by an operator")
    if present:
        # The operator already decides what this event sends; a second rule would send twice.
        names = ", ".join(repr(row.name) for row in present)
        return Item("rule", wanted.name, "kept", f"the event already has rules: {names}")
    retired = [item.name for item in templates if item.reason == RETIRED]
    if retired:
        return Item("rule", wanted.name, "kept", f"its template {', '.join(retired)} is {RETIRED}")
    if not dry_run:
        rules.create(session, wanted, default_locale=settings.template_default_locale)
    return Item("rule", wanted.name, "added")


def _same_rule(row: NotificationRule, wanted: RuleInput) -> bool:
    return all(getattr(row, field) == value for field, value in wanted.model_dump().items())
