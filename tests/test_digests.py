"""Digests and throttling end to end: the real RabbitMQ, the events actor with its digest
closer, the in-app actor and PostgreSQL (as the non-owner application role). Windows are a
few seconds long; every wait polls with a deadline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from producer.events import EventNotificationService
from producer.service import NotificationService
from shared.config import Settings
from shared.db.models import DigestBucket, EventLog, Notification, NotificationLog
from shared.db.rls import SYSTEM_SETTING, system_scope
from shared.db.session import get_engine
from shared.events import processing
from shared.events.digests import next_close
from tests.conftest import Fleet, final_status
from tests.test_events_flow import add_rule, save_template, set_preferences
from tests.waiting import wait_until

EVENT = "order.shipped"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def events(settings: Settings, fleet: Callable[..., Fleet]) -> EventNotificationService:
    fleet(settings, events=True)
    save_template(
        settings,
        key="shipped",
        channel="in_app",
        title="{{count}} shipped",
        message="{{#each events}}{{data.orderId}} {{/each}}"
        "first={{first.data.orderId}} last={{last.data.orderId}}",
        sampleData={"count": 1, "events": [], "first": {}, "last": {}},
    )
    return EventNotificationService(settings)


def shipped(settings: Settings, **fields: Any) -> str:
    return add_rule(settings, eventType=EVENT, channels=["in_app"], templateKey="shipped", **fields)


def inbox(settings: Settings, user_id: str, count: int, timeout: float = 20) -> list[Notification]:
    """Wait until ``user_id`` has ``count`` in-app notifications; return them, oldest first."""
    found: list[Notification] = []

    def ready() -> bool:
        nonlocal found
        with system_scope(settings.database_url) as session:
            query = (
                select(Notification).where(Notification.user_id == user_id).order_by(Notification.created_at)
            )
            found = list(session.scalars(query))
        return len(found) >= count

    wait_until(ready, timeout=timeout, message=lambda: f"{user_id} has {len(found)} of {count} notifications")
    return found


def processed(settings: Settings, event_ids: list[str]) -> None:
    def done() -> bool:
        with system_scope(settings.database_url) as session:
            query = select(func.count()).where(EventLog.id.in_(event_ids), EventLog.status == "processed")
            return session.scalar(query) == len(event_ids)

    wait_until(done, timeout=20, message="events still unprocessed")


def messages_of(settings: Settings, user_id: str) -> list[NotificationLog]:
    with system_scope(settings.database_url) as session:
        query = select(NotificationLog).where(NotificationLog.user_id == user_id)
        return list(session.scalars(query.order_by(NotificationLog.created_at)))


def test_a_window_folds_a_users_events_into_one_message(
    settings: Settings, events: EventNotificationService
) -> None:
    """Given a rule digesting order.shipped over 2s, when one user gets three events and another
    one, then each user receives one message listing their events in order, with the count
    and the first and last of them."""
    shipped(settings, digest={"window": "2s"})

    ann = [events.process_event(EVENT, user_id="ann", data={"orderId": f"A{i}"}) for i in range(3)]
    events.process_event(EVENT, user_id="bob", data={"orderId": "B0"})
    processed(settings, ann)

    (digest,) = inbox(settings, "ann", 1)
    assert digest.title == "3 shipped"
    assert digest.message == "A0 A1 A2 first=A0 last=A2"
    assert [n.title for n in inbox(settings, "bob", 1)] == ["1 shipped"]
    (message,) = messages_of(settings, "ann")
    assert message.event_id == ann[-1]
    assert final_status(NotificationService(settings), message.id)["status"] == "delivered"
    held = [events.get_event(event_id)["digests"] for event_id in ann]
    assert [[(d["state"], d["count"]) for d in h] for h in held] == [[("closed", 3)]] * 3
    assert len({h[0]["id"] for h in held}) == 1


def test_max_items_closes_the_digest_early_and_a_data_key_groups(
    settings: Settings, events: EventNotificationService
) -> None:
    """Given a day-long window keyed by data.orderId that closes at two items, when two events
    of one order and one of another come, then the full order's digest goes at once and the
    other order's waits."""
    shipped(settings, digest={"window": "1d", "key": "data.orderId", "maxItems": 2})

    for order in ("X", "X", "Y"):
        events.process_event(EVENT, user_id="cem", data={"orderId": order})

    (digest,) = inbox(settings, "cem", 1)
    assert digest.message == "X X first=X last=X"
    with system_scope(settings.database_url) as session:
        states = sorted(session.scalars(select(DigestBucket.state).where(DigestBucket.user_id == "cem")))
    assert states == ["closed", "open"]


def test_the_users_choice_overrides_the_rule(settings: Settings, events: EventNotificationService) -> None:
    """Given a digesting rule, when a user chose instant for the type she gets each event at
    once; when another turned the type off, his messages are skipped with the reason; a user
    choosing hourly for "all" over an instant rule has his events collected."""
    shipped(settings, digest={"window": "1h"})
    set_preferences(settings, "dee", digest={"order.shipped": "instant", "all": "daily"})
    set_preferences(settings, "eli", digest={"all": "off"})

    dee = events.process_event(EVENT, user_id="dee", data={"orderId": "D"})
    eli = events.process_event(EVENT, user_id="eli", data={"orderId": "E"})

    assert [n.message for n in inbox(settings, "dee", 1)] == ["D first=D last=D"]
    processed(settings, [dee, eli])
    (skipped,) = messages_of(settings, "eli")
    status = final_status(NotificationService(settings), skipped.id)
    assert (status["status"], status["errorCode"]) == ("skipped", "digest_off")
    assert "turned off order.shipped" in status["lastError"]


def test_a_digest_whose_user_turned_its_type_off_meanwhile_is_skipped(
    settings: Settings, events: EventNotificationService
) -> None:
    """Given an open 4s digest holding an event, when the user turns the type off before the
    window closes, then the digest's message is skipped with the reason, and nothing reaches
    her inbox."""
    shipped(settings, digest={"window": "4s"})
    event_id = events.process_event(EVENT, user_id="gus", data={"orderId": "G"})
    processed(settings, [event_id])
    assert [d["state"] for d in events.get_event(event_id)["digests"]] == ["open"]

    set_preferences(settings, "gus", digest={"order.shipped": "off"})

    wait_until(lambda: len(messages_of(settings, "gus")) == 1, timeout=20, message="the digest never closed")
    (message,) = messages_of(settings, "gus")
    status = final_status(NotificationService(settings), message.id)
    assert (status["status"], status["errorCode"]) == ("skipped", "digest_off")
    assert "turned off order.shipped" in status["lastError"]
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).where(Notification.user_id == "gus")) == 0


def test_a_digest_that_cannot_be_made_fails_alone(
    settings: Settings, events: EventNotificationService
) -> None:
    """Given two rules digesting the same event over 2 s, one of them edited in the database
    to a channel this version does not know, when the windows close, then that digest ends
    ``failed`` with the reason and the other is sent as usual (it is not held back by it)."""
    broken = shipped(settings, digest={"window": "2s"})
    shipped(settings, digest={"window": "2s"})
    event_id = events.process_event(EVENT, user_id="hal", data={"orderId": "H"})
    processed(settings, [event_id])
    with system_scope(settings.database_url) as session:
        session.execute(
            text("UPDATE notification_rules SET channels = CAST(:c AS jsonb) WHERE id = :id"),
            {"c": '["pigeon"]', "id": broken},
        )

    assert [n.title for n in inbox(settings, "hal", 1)] == ["1 shipped"]
    wait_until(
        lambda: events.get_event(event_id)["digests"][0]["state"] != "open",
        timeout=10,
        message="never closed",
    )
    held = {d["ruleId"]: d for d in events.get_event(event_id)["digests"]}
    assert held[broken]["state"] == "failed"
    assert "pigeon" in held[broken]["error"]
    assert [(d["state"], d["error"]) for r, d in held.items() if r != broken] == [("closed", None)]
    assert len(messages_of(settings, "hal")) == 1


def test_a_users_cadence_closes_in_her_time_zone(
    settings: Settings, events: EventNotificationService
) -> None:
    """Given a user in Kolkata (UTC+05:30) who chose hourly digests, when an event comes, then
    its digest closes at the next full hour of her clock, a half hour off UTC's."""
    shipped(settings)
    set_preferences(settings, "jon", timezone="Asia/Kolkata", digest={"all": "hourly"})

    event_id = events.process_event(EVENT, user_id="jon", data={"orderId": "J"})
    processed(settings, [event_id])

    event = events.get_event(event_id)
    (digest,) = event["digests"]
    occurred = datetime.fromisoformat(event["createdAt"])
    closes = datetime.fromisoformat(digest["closesAt"])
    assert closes == next_close("hourly", occurred, "Asia/Kolkata")
    assert closes.astimezone(ZoneInfo("Asia/Kolkata")).minute == 0 and closes.astimezone(UTC).minute == 30


def test_a_critical_rule_never_digests(settings: Settings, events: EventNotificationService) -> None:
    """Given a critical rule with a digest and a user who chose a daily digest, when the event
    comes, then it is sent at once."""
    shipped(settings, digest={"window": "1d"}, critical=True)
    set_preferences(settings, "fay", digest={"all": "daily"})

    events.process_event(EVENT, user_id="fay", data={"orderId": "F"})

    assert [n.title for n in inbox(settings, "fay", 1)] == ["1 shipped"]


def test_a_throttle_skips_what_is_over_the_limit(
    settings: Settings, events: EventNotificationService
) -> None:
    """Given a throttle of two per hour that skips, when four events come one after the other,
    then two are delivered and two are skipped as throttled."""
    shipped(settings, throttle={"limit": 2, "per": "1h", "then": "skip"})

    sent = []
    for i in range(4):
        sent.append(events.process_event(EVENT, user_id="gus", data={"orderId": f"G{i}"}))
        processed(settings, sent)

    service = NotificationService(settings)
    outcomes = [final_status(service, m.id) for m in messages_of(settings, "gus")]
    assert [o["status"] for o in outcomes] == ["delivered", "delivered", "skipped", "skipped"]
    assert {o["errorCode"] for o in outcomes[2:]} == {"throttled"}


def test_a_throttle_holds_under_concurrent_events(
    settings: Settings, events: EventNotificationService
) -> None:
    """Given a throttle of three per hour, when ten events of one user arrive at once and four
    worker threads process them side by side, then exactly three are delivered."""
    shipped(settings, throttle={"limit": 3, "per": "1h"})

    sent = [events.process_event(EVENT, user_id="kit", data={"orderId": f"K{i}"}) for i in range(10)]
    processed(settings, sent)

    service = NotificationService(settings)
    outcomes = Counter(final_status(service, m.id)["status"] for m in messages_of(settings, "kit"))
    assert outcomes == {"delivered": 3, "skipped": 7}


def test_a_throttle_digests_what_is_held_back(settings: Settings, events: EventNotificationService) -> None:
    """Given a throttle of one per 2s that digests, when three events come, then the first goes
    at once and the other two follow in one digest."""
    shipped(settings, throttle={"limit": 1, "per": "2s", "then": "digest"})

    sent = []
    for i in range(3):
        sent.append(events.process_event(EVENT, user_id="hal", data={"orderId": f"H{i}"}))
        processed(settings, sent)

    first, digest = inbox(settings, "hal", 2)
    assert first.message == "H0 first=H0 last=H0"
    assert (digest.title, digest.message) == ("2 shipped", "H1 H2 first=H1 last=H2")


@pytest.mark.parametrize(
    ("digest", "complaint"),
    [
        ({"window": "10 minutes"}, "not a duration"),
        ({"window": "0s"}, "not a duration"),
        ({"window": "31d"}, "outside 1s..30d"),
        ({"cadence": "monthly"}, "not a cadence"),
        ({"cadence": "weekly on funday at 09:00"}, "not a day of the week"),
        ({"cadence": "daily at 25:00"}, "not a time of day"),
        ({"window": "1h", "cadence": "hourly"}, "either a window"),
        ({}, "either a window"),
        ({"window": "1h", "key": "userId"}, "key is eventType or a data path"),
        ({"window": "1h", "maxItems": 0}, "greater than or equal to 1"),
    ],
)
def test_a_malformed_digest_is_refused(settings: Settings, digest: dict[str, Any], complaint: str) -> None:
    from shared.events.rules import RuleInput

    body = {
        "name": "r",
        "eventType": EVENT,
        "channels": ["in_app"],
        "templateKey": "shipped",
        "digest": digest,
    }
    with pytest.raises(ValueError, match=complaint):
        RuleInput.model_validate(body)


def test_many_events_folded_on_one_connection_all_land(settings: Settings) -> None:
    """Given one database connection folding 20 events into digests (psycopg prepares a
    statement on the server after its fifth run, and the planner then sees parameters, not
    values), then every event lands in its user's open digest: the upsert names the open
    digests' index by its own predicate, not by a parameter."""
    save_template(
        settings, key="shipped", channel="in_app", title="{{count}}", message="m", sampleData={"count": 1}
    )
    shipped(settings, digest={"window": "1h"})
    event_ids = [
        EventNotificationService(settings).process_event(EVENT, user_id=f"u{n % 4}", data={"n": n})
        for n in range(20)
    ]
    with get_engine(settings.database_url).connect() as connection:
        for event_id in event_ids:
            with Session(bind=connection) as session, session.begin():
                session.execute(text("SELECT set_config(:name, 'on', true)"), {"name": SYSTEM_SETTING})
                processing.process(session, settings, event_id)
    with system_scope(settings.database_url) as session:
        query = select(DigestBucket.user_id, DigestBucket.item_count).where(DigestBucket.state == "open")
        counts = {user: count for user, count in session.execute(query)}
    assert counts == {f"u{u}": 5 for u in range(4)}
