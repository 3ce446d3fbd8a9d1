"""Installing the starter set on PostgreSQL (as the application role) and on SQLite (the
embedded default): everything added once, nothing changed by a second run, and whatever an
operator edited, retired, switched off or wrote rules for left alone and reported kept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import func, select

from migrations.migrate import upgrade
from producer.starter import install_on_embedded_database, install_starter
from producer.starter.content import load
from shared.config import Settings
from shared.db.models import MessageTemplate, NotificationRule
from shared.db.session import session_scope
from shared.events import rules
from shared.templates import store

STARTER = load()
#: Two templates and one rule per event type.
EVERYTHING = 3 * len(STARTER)


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> Settings:
    """Settings on a migrated, empty database of each kind the service runs on."""
    if request.param == "postgresql":
        return settings
    url = f"sqlite:///{tmp_path / 'starter.db'}"
    upgrade(url)
    return dataclasses.replace(settings, database_url=url, migration_database_url=None)


def stored(settings: Settings) -> tuple[int, int]:
    """(template versions, rules) in the database."""
    with session_scope(settings.database_url) as session:
        templates = session.scalar(select(func.count()).select_from(MessageTemplate)) or 0
        rule_count = session.scalar(select(func.count()).select_from(NotificationRule)) or 0
        return templates, rule_count


def rule_named(settings: Settings, name: str) -> NotificationRule:
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(NotificationRule).where(NotificationRule.name == name)).one()
        session.expunge(row)
        return row


def test_installs_both_templates_and_the_rule_of_every_event_type(db: Settings) -> None:
    report = install_starter(db)

    assert report.counts() == {"added": EVERYTHING, "unchanged": 0, "kept": 0}
    assert stored(db) == (2 * len(STARTER), len(STARTER))
    with session_scope(db.database_url) as session:
        current = {(row.key, row.channel) for row in store.list_current(session)}
        by_type = {row.event_type: row for row in session.scalars(select(NotificationRule))}
        assert current == {(e.event_type, c) for e in STARTER for c in ("email", "in_app")}
        for event in STARTER:
            row = by_type[event.event_type]
            assert (row.channels, row.template_key, row.active) == (
                ["email", "in_app"],
                event.event_type,
                True,
            )
    assert by_type["security.alert"].critical and not by_type["order.shipped"].critical


def test_installing_twice_changes_nothing(db: Settings) -> None:
    install_starter(db)
    before = rule_named(db, "Starter: order.created").updated_at

    again = install_starter(db)

    assert again.counts() == {"added": 0, "unchanged": EVERYTHING, "kept": 0}
    assert stored(db) == (2 * len(STARTER), len(STARTER))
    assert rule_named(db, "Starter: order.created").updated_at == before


def test_a_dry_run_lists_what_would_be_added_and_changes_nothing(db: Settings) -> None:
    report = install_starter(db, dry_run=True)

    assert report.dry_run
    assert report.counts() == {"added": EVERYTHING, "unchanged": 0, "kept": 0}
    assert stored(db) == (0, 0)


def test_what_an_operator_changed_is_kept(db: Settings) -> None:
    """Given the starter set with an email template edited, a rule switched off, a template
    retired with its rule deleted, and an operator's own rule for another event, when it is
    installed again, then each of those is reported kept and stays as the operator left it."""
    install_starter(db)
    locale = db.template_default_locale
    with session_scope(db.database_url) as session:
        edited = store.TemplateInput(
            key="subscription.payment_failed",
            channel="email",
            subject="We could not charge you",
            text="Sorry",
        )
        store.save(session, edited, default_locale=locale)
        off = session.scalars(
            select(NotificationRule).where(NotificationRule.name == "Starter: order.shipped")
        ).one()
        off.active = False
        store.delete(session, "message.received", "in_app", locale)
        received = session.scalars(
            select(NotificationRule).where(NotificationRule.name == "Starter: message.received")
        ).one()
        rules.delete(session, received.id)
        delivered = session.scalars(
            select(NotificationRule).where(NotificationRule.name == "Starter: order.delivered")
        ).one()
        rules.delete(session, delivered.id)
        own = rules.RuleInput(
            name="delivery survey",
            event_type="order.delivered",
            channels=["email"],
            template_key="order.delivered",
        )
        rules.create(session, own, default_locale=locale)

    report = install_starter(db)

    kept = {item.name: item.reason for item in report.having("kept")}
    assert kept == {
        "subscription.payment_failed (email)": "version 2 differs from the starter's",
        "Starter: order.shipped": "edited by an operator",
        "message.received (in_app)": "retired by an operator",
        "Starter: message.received": "its template message.received (in_app) is retired by an operator",
        "Starter: order.delivered": "the event already has rules: 'delivery survey'",
    }
    assert report.counts()["added"] == 0
    with session_scope(db.database_url) as session:
        (email,) = store.current(session, "subscription.payment_failed", "email", locale)
        assert email.subject == "We could not charge you"
        assert store.current(session, "message.received", "in_app") == []
        names = set(session.scalars(select(NotificationRule.name)))
    assert "Starter: message.received" not in names and "Starter: order.delivered" not in names
    assert rule_named(db, "Starter: order.shipped").active is False


def test_run_installs_it_on_the_embedded_database_only(db: Settings) -> None:
    """`kai-messaging run` calls this after migrating: on SQLite the starter set is installed,
    on PostgreSQL nothing is (production operators opt in with `kai-messaging starter`)."""
    report = install_on_embedded_database(db)

    if db.database_url.startswith("sqlite"):
        assert report is not None and report.counts()["added"] == EVERYTHING
        assert stored(db) == (2 * len(STARTER), len(STARTER))
    else:
        assert report is None
        assert stored(db) == (0, 0)


def test_a_refused_starter_set_does_not_stop_the_embedded_run(tmp_path: Path, settings: Settings) -> None:
    """Given render limits below what the starter copy needs, when `kai-messaging run` installs
    it on SQLite, then nothing is stored and the run goes on (the command reports why)."""
    url = f"sqlite:///{tmp_path / 'starter.db'}"
    upgrade(url)
    tight = dataclasses.replace(
        settings, database_url=url, migration_database_url=None, template_max_output_bytes=64
    )

    assert install_on_embedded_database(tight) is None
    assert stored(tight) == (0, 0)
