"""The states of a message's row, one transition at a time, and the claim guard that keeps
two workers from sending one message: on the real PostgreSQL (as the application role, where
a batch of outcomes is one statement) and on SQLite (the embedded default, one statement
each)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from migrations.migrate import upgrade
from shared import tracking
from shared.channels import TERMINAL_STATUSES, Channel, Status
from shared.config import Settings
from shared.db.models import NotificationLog, utcnow
from shared.db.rls import system_scope
from shared.payloads import InAppPayload, Stored

LEASE = timedelta(minutes=1)


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> str:
    """The URL of a migrated database of each kind the service runs on (the PostgreSQL one
    emptied before each test, as every test's)."""
    if request.param == "postgresql":
        return settings.database_url
    url = f"sqlite:///{tmp_path / 'tracking.db'}"
    upgrade(url)
    return url


#: A lease already over when it is taken: the next claim finds the previous worker gone.
EXPIRED = timedelta(seconds=-1)
#: How long a queued message may wait for its broker message before it counts as lost.
RESCUE_AFTER = timedelta(minutes=15)


def new_message(db: str, *, max_attempts: int = 3, due_in: timedelta | None = None) -> str:
    new = tracking.NewMessage(
        channel=Channel.IN_APP,
        recipient="u1",
        user_id="u1",
        payload=Stored(InAppPayload(title="T", message="M")),
        max_attempts=max_attempts,
        due_at=None if due_in is None else utcnow() + due_in,
    )
    with system_scope(db) as session:
        message_id, created = tracking.create(session, new)
    assert created
    return message_id


def claim(db: str, message_id: str, lease: timedelta = LEASE) -> tracking.ClaimResult:
    with system_scope(db) as session:
        return tracking.claim(session, message_id, lease)


def row(db: str, message_id: str) -> NotificationLog:
    with system_scope(db) as session:
        found = tracking.get(session, message_id)
        assert found is not None
        session.expunge(found)
        return found


def claimed(db: str, message_id: str, lease: timedelta = LEASE) -> tracking.Claimed:
    result = claim(db, message_id, lease)
    assert isinstance(result, tracking.Claimed), result
    return result


# -- the claim guard ---------------------------------------------------------------------


def test_a_claim_takes_a_queued_message_for_one_attempt(db: str) -> None:
    message_id = new_message(db)

    taken = claimed(db, message_id)

    assert (taken.id, taken.attempt, taken.max_attempts) == (message_id, 1, 3)
    assert taken.payload == {"title": "T", "message": "M", "type": "info", "actionUrl": None, "data": {}}
    stored = row(db, message_id)
    assert stored.status == Status.PROCESSING.value
    assert stored.locked_until is not None and stored.locked_until > utcnow()


def test_a_live_claim_is_not_taken_twice(db: str) -> None:
    """Given a message claimed by one worker, a second copy of it is told to wait until the
    lease ends, and the attempt count is not touched."""
    message_id = new_message(db)
    claimed(db, message_id)

    second = claim(db, message_id)

    assert isinstance(second, tracking.Busy)
    assert second.until > utcnow()
    assert row(db, message_id).attempts == 1


def test_an_expired_claim_is_taken_again_as_the_next_attempt(db: str) -> None:
    """Given a worker that died holding the claim, once its lease is over the next copy takes
    the message as attempt 2."""
    message_id = new_message(db)
    claimed(db, message_id, EXPIRED)

    again = claimed(db, message_id)

    assert again.attempt == 2


def test_a_message_whose_last_attempt_never_recorded_fails_instead_of_a_further_attempt(db: str) -> None:
    """Given a message whose every attempt was claimed but whose last outcome was never
    written (the worker died, or recording it failed), when its lease is over, then the
    next claim ends it as failed, saying why, instead of taking an attempt past its maximum."""
    message_id = new_message(db, max_attempts=2)
    claimed(db, message_id, EXPIRED)
    claimed(db, message_id, EXPIRED)

    again = claim(db, message_id)

    assert again == tracking.AlreadyFinal(Status.FAILED)
    stored = row(db, message_id)
    assert (stored.status, stored.attempts, stored.error_code) == ("failed", 2, "attempts_exhausted")
    assert stored.last_error is not None and "2 attempts" in stored.last_error
    assert stored.completed_at is not None and stored.locked_until is None


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_finished_message_is_never_claimed(db: str, status: Status) -> None:
    """Given a message already finished (a redelivered or duplicated broker message), the
    claim says so and nothing changes."""
    message_id = new_message(db)
    with system_scope(db) as session:
        found = tracking.get(session, message_id)
        assert found is not None
        found.status = status.value

    assert claim(db, message_id) == tracking.AlreadyFinal(status)
    assert row(db, message_id).attempts == 0


def test_an_unknown_message_is_missing(db: str) -> None:
    assert isinstance(claim(db, tracking.new_message_id()), tracking.Missing)


def test_only_the_attempt_holding_the_claim_records_its_outcome(db: str) -> None:
    """Given attempt 1 whose lease ran out and attempt 2 that took over, then attempt 1's late
    result is ignored and attempt 2's stands."""
    message_id = new_message(db)
    first = claimed(db, message_id, EXPIRED)
    second = claimed(db, message_id)

    with system_scope(db) as session:
        late = tracking.mark_failed(session, message_id, first.attempt, error="late", code="late")
        current = tracking.mark_sent(
            session, message_id, second.attempt, provider_message_id="n-1", delivered=True
        )

    assert (late, current) == (False, True)
    stored = row(db, message_id)
    assert (stored.status, stored.error_code, stored.provider_message_id) == ("delivered", None, "n-1")
    assert stored.delivered_at is not None and stored.locked_until is None


# -- outcomes ----------------------------------------------------------------------------


def test_a_retry_queues_the_message_again_with_its_error(db: str) -> None:
    message_id = new_message(db)
    taken = claimed(db, message_id)
    at = utcnow() + timedelta(seconds=5)

    with system_scope(db) as session:
        assert tracking.mark_retry(
            session, message_id, taken.attempt, error="503", code="http_503", at=at, park=False
        )

    stored = row(db, message_id)
    assert (stored.status, stored.error_code, stored.last_error) == ("queued", "http_503", "503")
    assert (stored.next_attempt_at, stored.due_at) == (at, None)
    assert claimed(db, message_id).attempt == 2


def test_a_long_retry_is_parked_for_the_scheduler(db: str) -> None:
    message_id = new_message(db)
    taken = claimed(db, message_id)
    at = utcnow() + timedelta(hours=2)

    with system_scope(db) as session:
        tracking.mark_retry(
            session, message_id, taken.attempt, error="down", code="http_500", at=at, park=True
        )

    assert row(db, message_id).due_at == at


def test_quiet_hours_defer_without_spending_an_attempt(db: str) -> None:
    message_id = new_message(db)
    taken = claimed(db, message_id)
    until = utcnow() + timedelta(hours=8)

    with system_scope(db) as session:
        tracking.defer(session, message_id, taken.attempt, until=until, reason="quiet hours")

    stored = row(db, message_id)
    assert (stored.status, stored.attempts, stored.due_at, stored.error_code) == (
        "queued",
        0,
        until,
        "deferred",
    )


def test_a_message_that_cannot_be_sent_is_closed_without_an_attempt(db: str) -> None:
    message_id = new_message(db)

    with system_scope(db) as session:
        closed = tracking.close_unsendable(
            session, message_id, status=Status.SKIPPED, reason="no phone number", code="no_recipient"
        )
        again = tracking.close_unsendable(session, message_id, status=Status.FAILED, reason="x", code="x")

    assert (closed, again) == (True, False)
    stored = row(db, message_id)
    assert (stored.status, stored.attempts, stored.error_code) == ("skipped", 0, "no_recipient")
    assert stored.completed_at is not None
    with system_scope(db) as session, pytest.raises(ValueError):
        tracking.close_unsendable(session, message_id, status=Status.QUEUED, reason="x", code="x")


def test_a_failed_message_is_reopened_with_more_attempts(db: str) -> None:
    """Given a message that failed after all its attempts (a dead letter), reopening it gives
    it a new round; a message in another state is left alone."""
    message_id = new_message(db, max_attempts=1)
    taken = claimed(db, message_id)
    with system_scope(db) as session:
        tracking.mark_failed(session, message_id, taken.attempt, error="gave up", code="http_500")

    with system_scope(db) as session:
        wrong_state = tracking.reopen(
            session, message_id, extra_attempts=2, from_statuses=frozenset({Status.SENT})
        )
        reopened = tracking.reopen(
            session, message_id, extra_attempts=2, from_statuses=frozenset({Status.FAILED})
        )

    assert (wrong_state, reopened) == (False, True)
    stored = row(db, message_id)
    assert (stored.status, stored.attempts, stored.max_attempts) == ("queued", 1, 3)
    assert stored.completed_at is None
    assert claimed(db, message_id).attempt == 2


def test_the_scheduler_takes_due_and_lost_messages_once(db: str) -> None:
    """Given one message parked until the past, one parked for later, one queued long ago but
    never picked up (lost by the broker) and one queued just now, then one pass takes the due
    and the lost ones, and a second pass takes nothing."""
    due = new_message(db, due_in=timedelta(seconds=-1))
    later = new_message(db, due_in=timedelta(hours=1))
    lost = new_message(db)
    fresh = new_message(db)
    with system_scope(db) as session:
        found = tracking.get(session, lost)
        assert found is not None
        found.next_attempt_at = utcnow() - 2 * RESCUE_AFTER

    with system_scope(db) as session:
        first = tracking.take_due(session, channels=[Channel.IN_APP], limit=10, stale_after=RESCUE_AFTER)
    with system_scope(db) as session:
        second = tracking.take_due(session, channels=[Channel.IN_APP], limit=10, stale_after=RESCUE_AFTER)

    assert sorted(first) == sorted([(due, Channel.IN_APP), (lost, Channel.IN_APP)])
    assert second == []
    assert row(db, later).due_at is not None
    assert row(db, fresh).status == "queued"
